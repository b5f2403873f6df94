"""What the any-loop mixing costs inside the Hugging Face Trainer: `MixingDataset` + `MixingCallback`
against the same Trainer on a static `datasets.interleave_datasets` mix, same model, batch and
corpus.

Variants:
  interleave - the baseline: per-domain HF datasets of packed windows, `interleave_datasets` with the
               natural proportions (what a user without a mixer would run), the Trainer's own loss;
  policy     - an exported AC-ODM policy served from the state (proxy mode's target side);
  odm        - the ODM bandit, updated every step from the per-domain losses;
  online     - online AC-ODM: per-domain gradients of the alignment layers every step, the agent's
               replay buffer and its updates.
Every repeat runs each variant once in this process, the order rotating, each run building its own
model, data and Trainer; a run's figures are its median step time (wall clock between consecutive
`on_step_end`s, after warm-up steps, so the data loading and every callback are inside) and its
peak RSS growth: the Linux high-water mark, reset when the run starts, over the RSS then (so it
holds the run's data, model, optimizer, activations and mixer; on a GPU also peak allocated CUDA
memory). One process, not one per run: on a shared machine the imports of a fresh process cost
more CPU time than the runs. Reported: medians over repeats, and the median over repeats of each
run's ratio to that repeat's interleave run.

    python benchmarks/bench_anyloop.py --config configs/demo.yaml --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("interleave", "policy", "odm", "online")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def interleaved_dataset(tokens, seq_len: int, seed: int):
    """The baseline's data: each domain's stream cut into packed windows, mixed by natural proportions."""
    import datasets

    parts = []
    for d in tokens.domains:
        stream = tokens.train[d]
        n = stream.size // seq_len
        rows = stream[: n * seq_len].reshape(n, seq_len).astype(np.int64)
        parts.append(datasets.Dataset.from_dict({"input_ids": rows, "labels": rows}).to_iterable_dataset())
    mixed = datasets.interleave_datasets(parts, probabilities=tokens.natural_proportions().tolist(), seed=seed,
                                         stopping_strategy="all_exhausted")
    return mixed.with_format("torch")


def run_variant(variant: str, args) -> dict:
    """One Trainer run of `variant` in this process: its step times and peak memory."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator

    from acodm_ray.anyloop import MixingDataset, MixingFeedback, trainer_kwargs
    from acodm_ray.config import load_config
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.model import build_model

    cfg = load_config(args.config, args.overrides)
    t = cfg.train
    total = args.warmup + args.steps
    tokens, _ = load_tokenized(cfg)
    cuda = torch.cuda.is_available()
    Path("/proc/self/clear_refs").write_text("5")  # the peak below is this run's
    rss_before = _status_kb("VmRSS") / 1024
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, t.seed)
    extra: dict = {}
    if variant == "interleave":
        dataset = interleaved_dataset(tokens, t.seq_len, t.seed)
    else:
        dataset = MixingDataset.from_corpus(tokens, t.seq_len, seed=t.seed)
        policy = None
        if variant == "policy":
            policy = Path(tempfile.mkdtemp()) / "policy"
            make_policy(model, dataset, cfg, policy)
        mixer = {"policy": None, "odm": "odm", "online": "acodm-online"}[variant]
        feedback = MixingFeedback(model, dataset, total_steps=total, mixer=mixer, policy=policy, signals=cfg.signals,
                                  mixer_config=cfg.mixer, agent=cfg.agent, seed=t.seed)
        extra = trainer_kwargs(feedback)

    times: list[float] = []

    class Timer(TrainerCallback):
        last = None

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            if state.global_step > args.warmup:
                times.append(now - self.last)
            self.last = now

    extra.setdefault("callbacks", []).append(Timer())  # last: its on_step_end comes after the mixing's
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), max_steps=total, per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, remove_unused_columns=False,
        save_strategy="no", report_to=[], disable_tqdm=True, logging_strategy="no", seed=t.seed,
        use_cpu=not cuda,
    )
    Trainer(model=model, args=targs, train_dataset=dataset, data_collator=default_data_collator, **extra).train()
    out = {"variant": variant, "step_s": times, "step_s_median": statistics.median(times),
           "peak_rss_mb": _status_kb("VmHWM") / 1024, "rss_before_mb": rss_before,
           "rss_growth_mb": _status_kb("VmHWM") / 1024 - rss_before}
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def make_policy(model, dataset, cfg, out: Path) -> None:
    """An exported AC-ODM actor of the config's agent size for this run's state (serving costs the same
    trained or not)."""
    import torch

    from acodm_ray.agent.networks import Actor
    from acodm_ray.agent.policy_file import save_policy
    from acodm_ray.model import state_params
    from acodm_ray.signals import make_state_spec

    names = [n for n, _ in state_params(model, cfg.signals.param_suffix, cfg.signals.state_layers)]
    spec = make_state_spec(dataset.domains, names, cfg.signals.progress_scale, cfg.signals.z_clip)
    torch.manual_seed(0)
    actor = Actor.from_config(cfg.agent, spec["dim"], len(dataset.domains))
    save_policy(out, actor, dataset.domains, spec, {})


def summarise(runs: list[list[dict]]) -> dict:
    by = {v: [r for rep in runs for r in rep if r["variant"] == v] for v in VARIANTS}
    base = {i: {r["variant"]: r for r in rep} for i, rep in enumerate(runs)}
    out = {}
    for v in VARIANTS:
        time_ratio = [base[i][v]["step_s_median"] / base[i]["interleave"]["step_s_median"] for i in base]
        # the extra growth over the interleave run's, as a share of that run's whole peak
        mem_ratio = [1 + (base[i][v]["rss_growth_mb"] - base[i]["interleave"]["rss_growth_mb"])
                     / base[i]["interleave"]["peak_rss_mb"] for i in base]
        out[v] = {
            "step_ms_median": 1000 * statistics.median(r["step_s_median"] for r in by[v]),
            # a run's fastest step: the least disturbed by other work on a shared machine
            "fastest_step_ms_median": 1000 * statistics.median(min(r["step_s"]) for r in by[v]),
            "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in by[v]),
            "rss_growth_mb_median": statistics.median(r["rss_growth_mb"] for r in by[v]),
            "time_overhead_paired": statistics.median(time_ratio) - 1,
            "rss_overhead_paired": statistics.median(mem_ratio) - 1,
            "time_ratios": time_ratio,
        }
        if "peak_cuda_mb" in by[v][0]:
            out[v]["peak_cuda_mb_median"] = statistics.median(r["peak_cuda_mb"] for r in by[v])
    return out


def write_markdown(result: dict, argv: str) -> None:
    from benchmarks.report import machine, table, update_section

    s = result["summary"]
    rows = [[v, s[v]["step_ms_median"], s[v]["fastest_step_ms_median"], "" if v == "interleave" else f"{100 * s[v]['time_overhead_paired']:+.1f}%",
             s[v]["rss_growth_mb_median"], s[v]["peak_rss_mb_median"],
             "" if v == "interleave" else f"{100 * s[v]['rss_overhead_paired']:+.1f}%"] for v in VARIANTS]
    spread = {v: f"{100 * (min(s[v]['time_ratios']) - 1):+.0f}% .. {100 * (max(s[v]['time_ratios']) - 1):+.0f}%"
              for v in VARIANTS[1:]}
    body = (
        f"Command: `python benchmarks/bench_anyloop.py {argv}`  \n"
        f"Machine: {machine()}; {result['model_params']:,}-parameter model, {result['num_domains']} domains, "
        f"{result['tokens_per_step']:,} tokens per optimizer step; {result['repeats']} repeats of every variant "
        f"(one process, order rotating), {result['steps']} timed steps per run after {result['warmup']} "
        f"warm-up steps.\n\n"
        + table(["variant", "step (ms, median)", "fastest step of a run (ms, median)", "time overhead vs interleave (paired median)",
                 "peak RSS growth in the run (MB, median)", "process peak RSS (MB, median)",
                 "memory overhead: extra growth / interleave's peak (paired median)"], rows)
        + "\n\nPer-repeat time ratios to interleave (min .. max): "
        + "; ".join(f"{v} {r}" for v, r in spread.items()) + ".\n\n" + result["note"]
    )
    update_section("anyloop", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="a sentence for the table (e.g. what else the machine ran)")
    parser.add_argument("--out", default="benchmarks/results/anyloop.json")
    args = parser.parse_args()
    runs = []
    for r in range(args.repeats):
        order = list(VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)])
        runs.append([run_variant(v, args) for v in order])
        gc.collect()
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{x['variant']} {1000 * x['step_s_median']:.0f} ms"
                                                             for x in runs[-1]), flush=True)
    from acodm_ray.config import load_config
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.model import build_model

    cfg = load_config(args.config, args.overrides)
    tokens, _ = load_tokenized(cfg)
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, 0)
    result = {
        "config": args.config, "overrides": args.overrides, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "platform": platform.platform(),
        "model_params": sum(p.numel() for p in model.parameters()), "num_domains": len(tokens.domains),
        "tokens_per_step": cfg.train.micro_batch_size * cfg.train.grad_accum * cfg.train.seq_len,
        "runs": runs, "summary": summarise(runs), "note": args.note,
    }
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, " ".join(sys.argv[1:]))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
