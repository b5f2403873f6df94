"""Throughput of the shared training step against a bare PyTorch loop, and the cost of the signals.

Three variants train the same model on the same batch shapes in one process:
  bare     - the loop a user would write: sample a batch, forward, cross-entropy, backward, clip,
             AdamW (no weight decay on biases and norms) with a warm-up + cosine LambdaLR schedule,
             no per-domain bookkeeping; fed the same batches it ends with the same parameters as
             `step` (tests/test_train_step.py), so it is the upper bound of `step`'s throughput;
  step     - LMTrainer.step without alignment signals (losses, counts, state only: what ODM needs);
  signals  - LMTrainer.step with the per-domain gradient-alignment scores (what AC-ODM needs).

The variants take turns one optimizer step at a time (the order rotates every round), and the
figure is the median over all steps of each variant's per-step time. An earlier version timed
blocks of 4 consecutive steps per variant and took the median of 5 blocks: on a shared 2-core
machine one burst of someone else's work (several seconds) lands in one variant's blocks and moves
its median (that is how `bare` came out at 3,192 tok/s against `step`'s 8,649, with the same
computation). Step-by-step interleaving spreads such bursts over all variants, and the median over
many single steps ignores them.

Each step's wall time, CPU time (of this process: what other processes on the machine move far
less) and minor page faults are recorded. The timing process keeps glibc's heap between steps
(`steady_malloc`, `--malloc default` to turn it off). Without that, `step` measured 4% faster than
`bare` paired by round: the two do the same tensor work (per step the profiler lists the same
280 mm, 128 addmm, 8 log-softmax and 64 attention calls; `bare`'s only extra ops are 11 scalar
divisions and 16 views, and, before it excluded biases and norms from weight decay, 34 in-place
multiplies on small tensors; `step` runs more of every other op), but glibc gave the
free top of its heap back to the kernel and `bare` re-faulted ~38,000 pages a step against
`step`'s ~27,000 (~3 us each here: ~30 ms, 4% of a step), a difference set by the order the
tensors happen to be freed in (deleting `logits` before `backward` in `bare` raises it to ~47,000).
With the heap kept, every variant faults ~0 pages a step and the times compare the computation.

Reports median tokens/s (wall and per CPU-second), ratios to bare (of the medians, and the median
of per-round ratios), page faults per step, and the signals' extra memory (the per-domain gradient
buffer, measured from its tensors, plus peak RSS of each variant in a fresh subprocess, with the
default allocator).

    python benchmarks/bench_train_step.py --config configs/demo.yaml --rounds 40
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acodm_ray.config import load_config  # noqa: E402
from acodm_ray.model import build_model  # noqa: E402
from acodm_ray.train_step import LMTrainer, warmup_cosine  # noqa: E402
from benchmarks.report import machine, table, update_section  # noqa: E402


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
    """The baseline: the loop a user would write without any data-mixing machinery.

    It does the computation `LMTrainer.step` does, minus the bookkeeping: the same model and
    initialisation, next-token cross-entropy averaged over `grad_accum` micro-batches, gradient
    clipping, and AdamW with weight decay on the weight matrices only (biases and norms excluded,
    as nanoGPT and the HF Trainer do) under a warm-up + cosine `LambdaLR`.
    `tests/test_train_step.py` checks that both give the same parameters on the same batches."""

    def __init__(self, cfg, tokens):
        t = cfg.train
        self.cfg = cfg
        self.model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, t.seed)
        self.model.train()
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": t.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=t.lr,
            betas=tuple(t.betas),
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda step: warmup_cosine(step, t.warmup_steps, t.steps, t.lr, t.min_lr) / t.lr,
        )
        self.streams = [tokens.train[d] for d in tokens.domains]
        self.rng = np.random.default_rng(0)

    def sample(self, weights) -> torch.Tensor:
        """[micro_batch_size, seq_len + 1] windows of one domain drawn from `weights`."""
        t = self.cfg.train
        stream = self.streams[self.rng.choice(len(self.streams), p=weights)]
        starts = self.rng.integers(0, len(stream) - t.seq_len, t.micro_batch_size)
        return torch.from_numpy(
            np.stack([stream[s : s + t.seq_len + 1] for s in starts]).astype(np.int64)
        )

    def step(self, weights):
        t = self.cfg.train
        for _ in range(t.grad_accum):
            batch = self.sample(weights)
            logits = self.model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            (loss / t.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()


def make_variant(name, cfg, tokens):
    if name == "bare":
        return BareLoop(cfg, tokens)
    return LMTrainer(cfg, tokens, compute_signals=(name == "signals"), device="cpu")


def time_steps(runner, weights, steps):
    start = time.perf_counter()
    for _ in range(steps):
        runner.step(weights)
    return time.perf_counter() - start


def measure_steps(runner, weights, steps) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, minor page faults) of `steps` steps. CPU time
    counts only this process's own work, so other processes on the machine move it far less than
    wall time."""
    faults0, cpu0, wall0 = (
        resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
        time.process_time(),
        time.perf_counter(),
    )
    for _ in range(steps):
        runner.step(weights)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def steady_malloc() -> bool:
    """Keep freed memory in glibc's heap instead of giving it back to the kernel, so a step's
    tensors reuse pages already mapped (True where glibc's `mallopt` took both settings).

    By default glibc returns the free top of the heap to the kernel once it exceeds a threshold that
    moves with the sizes freed so far, and every page given back costs a page fault (~3 us with its
    zeroing, measured on the standard machine) when the next step touches it again. How many pages a
    step gives back depends on the order its tensors are freed in, not on the work it does: on the
    demo config the bare loop re-faulted ~38,000 pages a step against LMTrainer.step's ~27,000 (and
    deleting `logits` before `backward` in the bare loop raised it to ~47,000), ~30 ms or 4% of a
    step, which is how `step` came out faster than `bare`. With the heap kept, both fault ~0 pages
    a step. Tensors above 32 MB (glibc's largest mmap threshold) are still mapped and unmapped per
    use, the same for every variant that does the same computation."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1


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
    cmd = [
        sys.executable,
        __file__,
        "--config",
        args.config,
        "--steps",
        str(max(4, args.steps)),
        "--rss-only",
        variant,
    ]
    cmd += ["--synthetic"] if args.synthetic else []
    cmd += sum((["--set", o] for o in args.overrides), [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"peak-RSS run of {variant!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return float(proc.stdout.strip().splitlines()[-1])


def write_markdown(result: dict, argv: str) -> None:
    med, ratio, rss = (
        result["tokens_per_s_median"],
        result["ratio_to_bare"],
        result["training_peak_rss_growth_mb"],
    )
    paired, cpu_med, cpu_paired = (
        result["ratio_to_bare_paired"],
        result["tokens_per_cpu_s_median"],
        result["cpu_ratio_to_bare_paired"],
    )
    faults = result["minor_faults_per_step_median"]
    rows = [
        [
            v,
            med[v],
            f"{ratio[v]:.3f}",
            f"{paired[v]:.3f}",
            cpu_med[v],
            f"{cpu_paired[v]:.3f}",
            f"{faults[v]:,.0f}",
            rss[v],
        ]
        for v in ("bare", "step", "signals")
    ]
    load = result["load_average"]
    heap = (
        "glibc's heap kept between steps (`--malloc steady`: freed memory is not given back to the kernel, "
        "so no variant pays page faults for the order its tensors are freed in)"
        if result["steady_malloc"]
        else "the default allocator (`--malloc default`)"
    )
    body = (
        f"Command: `python benchmarks/bench_train_step.py {argv}`  \n"
        f"Machine: {machine()}; model {result['model_params']:,} parameters, {result['num_domains']} domains, "
        f"{result['tokens_per_step']:,} tokens per step; the variants take turns {result['steps_per_round']} "
        f"step(s) at a time, order rotating, {result['rounds']} turns each; median over turns; {heap}; "
        f"load average {load['start']:.2f} at the start, {load['end']:.2f} at the end.\n\n"
        + table(
            [
                "variant",
                "tokens/s (median)",
                "ratio to bare loop",
                "ratio to bare, paired by round (median)",
                "tokens per CPU-second (median)",
                "CPU ratio to bare, paired by round (median)",
                "minor page faults per step (median)",
                "peak RSS growth while training (MB)",
            ],
            rows,
        )
        + f"\n\nAlignment signals: {result['alignment_params']:,} tracked gradient entries, "
        f"{result['signals_buffer_mb']:.1f} MB of per-domain gradient buffers; time cost against the step "
        f"without signals: {100 * result['signals_time_overhead_vs_step']:+.1f}% wall, "
        f"{100 * result['signals_cpu_overhead_vs_step']:+.1f}% CPU."
    )
    update_section("train_step", body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=30, help="turns per variant")
    parser.add_argument("--steps", type=int, default=1, help="steps per variant per turn")
    parser.add_argument(
        "--synthetic", action="store_true", help="random tokens instead of the corpus"
    )
    parser.add_argument(
        "--malloc",
        choices=["steady", "default"],
        default="steady",
        help="steady: keep glibc's heap between steps (see steady_malloc); default: as it comes",
    )
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    parser.add_argument("--rss-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(args.config, args.overrides)
    tokens = load_tokens(cfg, args.synthetic)
    K = len(tokens.domains)
    weights = np.full(K, 1.0 / K)

    if args.rss_only:  # the default allocator: the memory a user's run holds
        runner = make_variant(args.rss_only, cfg, tokens)
        time_steps(runner, weights, 1)  # optimizer state and autograd buffers exist from here on
        before = reset_peak_rss_kb()
        time_steps(runner, weights, args.steps)
        print((peak_rss_kb() - before) / 1024)
        return

    steady = args.malloc == "steady" and steady_malloc()
    if args.malloc == "steady" and not steady:
        print(
            "glibc's mallopt is not available: timing with the default allocator", file=sys.stderr
        )
    load_start = os.getloadavg()[0]
    variants = ["bare", "step", "signals"]
    runners = {v: make_variant(v, cfg, tokens) for v in variants}
    for v in variants:  # warm-up: allocator, autograd graph caches
        time_steps(runners[v], weights, 2)
    tokens_per_step = cfg.train.grad_accum * cfg.train.micro_batch_size * cfg.train.seq_len
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpu_rates: dict[str, list[float]] = {v: [] for v in variants}
    faults: dict[str, list[int]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants[r % 3 :] + variants[: r % 3]
        order = order if (r // 3) % 2 == 0 else order[::-1]  # every variant in every position
        for v in order:
            wall, cpu, flt = measure_steps(runners[v], weights, args.steps)
            rates[v].append(tokens_per_step * args.steps / wall)
            cpu_rates[v].append(tokens_per_step * args.steps / cpu)
            faults[v].append(flt / args.steps)
    load_end = os.getloadavg()[0]
    med = {v: statistics.median(rates[v]) for v in variants}
    cpu_med = {v: statistics.median(cpu_rates[v]) for v in variants}
    # paired: each turn against the bare turn of the same round (seconds apart), then the median
    paired = {
        v: statistics.median(x / b for x, b in zip(rates[v], rates["bare"])) for v in variants
    }
    cpu_paired = {
        v: statistics.median(x / b for x, b in zip(cpu_rates[v], cpu_rates["bare"]))
        for v in variants
    }
    trainer = runners["signals"]
    align_numel = sum(p.numel() for p in trainer.align_params)
    result = {
        "config": args.config,
        "overrides": args.overrides,
        "synthetic_tokens": args.synthetic,
        "machine": {
            "cpu_count": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "processor": platform.processor(),
        },
        "steady_malloc": steady,
        "load_average": {"start": load_start, "end": load_end},
        "model_params": sum(p.numel() for p in trainer.model.parameters()),
        "num_domains": K,
        "tokens_per_step": tokens_per_step,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "tokens_per_s_median": med,
        "tokens_per_s_all": rates,
        "ratio_to_bare": {v: med[v] / med["bare"] for v in variants},
        "ratio_to_bare_paired": paired,
        "tokens_per_cpu_s_median": cpu_med,
        "tokens_per_cpu_s_all": cpu_rates,
        "cpu_ratio_to_bare_paired": cpu_paired,
        "minor_faults_per_step_median": {v: statistics.median(faults[v]) for v in variants},
        "minor_faults_per_step_all": faults,
        "signals_time_overhead_vs_step": med["step"] / med["signals"] - 1.0,
        "signals_cpu_overhead_vs_step": cpu_med["step"] / cpu_med["signals"] - 1.0,
        "alignment_params": align_numel,
        "signals_buffer_mb": (K + 2)
        * align_numel
        * 4
        / 2**20,  # K domain grads + prev + current read
        "training_peak_rss_growth_mb": {v: peak_rss_mb(v, args) for v in variants},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, " ".join(sys.argv[1:]))
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "tokens_per_s_median",
                    "ratio_to_bare",
                    "ratio_to_bare_paired",
                    "tokens_per_cpu_s_median",
                    "cpu_ratio_to_bare_paired",
                    "minor_faults_per_step_median",
                    "load_average",
                    "signals_time_overhead_vs_step",
                    "signals_cpu_overhead_vs_step",
                    "signals_buffer_mb",
                    "training_peak_rss_growth_mb",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
