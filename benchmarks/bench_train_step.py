"""Throughput of the shared training step against a bare PyTorch loop, and the cost of the signals.

Three variants train the same model on the same batch shapes, interleaved round by round in one
process so machine noise hits them alike:
  bare     - a plain loop: forward, cross-entropy, backward, clip, AdamW (no per-domain bookkeeping);
  step     - LMTrainer.step without alignment signals (losses, counts, state only: what ODM needs);
  signals  - LMTrainer.step with the per-domain gradient-alignment scores (what AC-ODM needs).
Reports median tokens/s over rounds, ratios to bare, and the signals' extra memory (the per-domain
gradient buffer, measured from its tensors, plus peak RSS of each variant in a fresh subprocess).

    python benchmarks/bench_train_step.py --config configs/demo.yaml --rounds 5 --steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acodm_ray.config import load_config  # noqa: E402
from benchmarks.report import machine, table, update_section  # noqa: E402
from acodm_ray.model import build_model  # noqa: E402
from acodm_ray.train_step import LMTrainer, build_optimizer  # noqa: E402


def synthetic_tokens(vocab: int, domains: int, length: int = 200_000):
    from acodm_ray.data.tokens import TokenizedCorpus

    rng = np.random.default_rng(0)
    names = [f"d{i}" for i in range(domains)]
    return TokenizedCorpus(
        domains=names,
        train={d: rng.integers(0, vocab, length).astype(np.int32) for d in names},
        validation={d: rng.integers(0, vocab, 20_000).astype(np.int32) for d in names},
        vocab_size=vocab,
        eos_id=vocab - 1,
    )


def load_tokens(cfg, synthetic: bool):
    if synthetic:
        return synthetic_tokens(cfg.tokenizer.vocab_size, 7)
    from acodm_ray.data.load import load_tokenized

    return load_tokenized(cfg)[0]


class BareLoop:
    """The baseline: what a user would write without any data-mixing machinery."""

    def __init__(self, cfg, tokens):
        self.cfg = cfg
        self.model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, cfg.train.seed)
        self.opt = build_optimizer(self.model, cfg)
        self.streams = [tokens.train[d] for d in tokens.domains]
        self.rng = np.random.default_rng(0)

    def step(self, weights):
        t = self.cfg.train
        self.opt.zero_grad(set_to_none=True)
        for _ in range(t.grad_accum):
            stream = self.streams[self.rng.choice(len(self.streams), p=weights)]
            starts = self.rng.integers(0, len(stream) - t.seq_len, t.micro_batch_size)
            batch = torch.from_numpy(np.stack([stream[s : s + t.seq_len + 1] for s in starts]).astype(np.int64))
            logits = self.model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
            (loss / t.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()


def make_variant(name, cfg, tokens):
    if name == "bare":
        return BareLoop(cfg, tokens)
    return LMTrainer(cfg, tokens, compute_signals=(name == "signals"), device="cpu")


def time_steps(runner, weights, steps):
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(weights)
    return time.perf_counter() - start


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss_kb() -> int:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs); returns the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def peak_rss_kb() -> int:
    return _status_kb("VmHWM")


def peak_rss_mb(variant: str, args) -> float:
    """Peak RSS while training `steps` steps of one variant, over its RSS before them, in a fresh
    process (after one warm-up step, so optimizer state already exists)."""
    cmd = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps), "--rss-only", variant]
    cmd += ["--synthetic"] if args.synthetic else []
    cmd += sum((["--set", o] for o in args.overrides), [])
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def write_markdown(result: dict, argv: str) -> None:
    med, ratio, rss = result["tokens_per_s_median"], result["ratio_to_bare"], result["training_peak_rss_growth_mb"]
    rows = [[v, med[v], ratio[v], rss[v]] for v in ("bare", "step", "signals")]
    body = (
        f"Command: `python benchmarks/bench_train_step.py {argv}`  \n"
        f"Machine: {machine()}; model {result['model_params']:,} parameters, {result['num_domains']} domains, "
        f"{result['tokens_per_step']:,} tokens per step; median of {result['rounds']} interleaved rounds of "
        f"{result['steps_per_round']} steps.\n\n"
        + table(["variant", "tokens/s (median)", "ratio to bare loop", "peak RSS growth while training (MB)"], rows)
        + f"\n\nAlignment signals: {result['alignment_params']:,} tracked gradient entries, "
        f"{result['signals_buffer_mb']:.1f} MB of per-domain gradient buffers; time cost against the step "
        f"without signals: {100 * result['signals_time_overhead_vs_step']:+.1f}%."
    )
    update_section("train_step", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    parser.add_argument("--synthetic", action="store_true", help="random tokens instead of the corpus")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    parser.add_argument("--rss-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(args.config, args.overrides)
    tokens = load_tokens(cfg, args.synthetic)
    K = len(tokens.domains)
    weights = np.full(K, 1.0 / K)

    if args.rss_only:
        runner = make_variant(args.rss_only, cfg, tokens)
        time_steps(runner, weights, 1)  # optimizer state and autograd buffers exist from here on
        before = reset_peak_rss_kb()
        time_steps(runner, weights, args.steps)
        print((peak_rss_kb() - before) / 1024)
        return

    variants = ["bare", "step", "signals"]
    runners = {v: make_variant(v, cfg, tokens) for v in variants}
    for v in variants:  # warm-up: allocator, autograd graph caches
        time_steps(runners[v], weights, 1)
    tokens_per_step = cfg.train.grad_accum * cfg.train.micro_batch_size * cfg.train.seq_len
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            rates[v].append(tokens_per_step * args.steps / time_steps(runners[v], weights, args.steps))
    med = {v: statistics.median(rates[v]) for v in variants}
    trainer = runners["signals"]
    align_numel = sum(p.numel() for p in trainer.align_params)
    result = {
        "config": args.config,
        "overrides": args.overrides,
        "synthetic_tokens": args.synthetic,
        "machine": {"cpu_count": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "processor": platform.processor()},
        "model_params": sum(p.numel() for p in trainer.model.parameters()),
        "num_domains": K,
        "tokens_per_step": tokens_per_step,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "tokens_per_s_median": med,
        "tokens_per_s_all": rates,
        "ratio_to_bare": {v: med[v] / med["bare"] for v in variants},
        "signals_time_overhead_vs_step": med["step"] / med["signals"] - 1.0,
        "alignment_params": align_numel,
        "signals_buffer_mb": (K + 2) * align_numel * 4 / 2**20,  # K domain grads + prev + current read
        "training_peak_rss_growth_mb": {v: peak_rss_mb(v, args) for v in variants},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, " ".join(sys.argv[1:]))
    print(json.dumps({k: result[k] for k in ("tokens_per_s_median", "ratio_to_bare",
                                             "signals_time_overhead_vs_step", "signals_buffer_mb",
                                             "training_peak_rss_growth_mb")}, indent=2))


if __name__ == "__main__":
    main()
