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
Time: every repeat runs each variant once in this process, the order rotating, each run building its
own model, data and Trainer; a run's figure is its median step time (wall clock between consecutive
`on_step_end`s, after warm-up steps, so the data loading and every callback are inside). One
process for the timed runs, not one per run: the imports of a fresh process cost more CPU time than
the runs, and on a shared machine that lands on the neighbours. Reported: medians over repeats, and
the median over repeats of each run's ratio to that repeat's interleave run.

Memory: runs in one process reuse each other's freed memory, so their peaks say nothing about a
variant. Each variant is therefore also run once in a fresh subprocess (`--memory-run`), and its
figure is that process's peak RSS (Linux VmHWM: imports, data, model, optimizer, activations and
mixer together; on a GPU also peak allocated CUDA memory), the overhead its ratio to interleave's.
Memory does not depend on what else the machine runs, so `--reuse-timed-runs` can add it to timed
runs measured earlier on an idle machine.

    python benchmarks/bench_anyloop.py --config configs/demo.yaml --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
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
        parts.append(
            datasets.Dataset.from_dict({"input_ids": rows, "labels": rows}).to_iterable_dataset()
        )
    mixed = datasets.interleave_datasets(
        parts,
        probabilities=tokens.natural_proportions().tolist(),
        seed=seed,
        stopping_strategy="all_exhausted",
    )
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
        feedback = MixingFeedback(
            model,
            dataset,
            total_steps=total,
            mixer=mixer,
            policy=policy,
            signals=cfg.signals,
            mixer_config=cfg.mixer,
            agent=cfg.agent,
            seed=t.seed,
        )
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

    extra.setdefault("callbacks", []).append(
        Timer()
    )  # last: its on_step_end comes after the mixing's
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=total,
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        remove_unused_columns=False,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        seed=t.seed,
        use_cpu=not cuda,
    )
    Trainer(
        model=model, args=targs, train_dataset=dataset, data_collator=default_data_collator, **extra
    ).train()
    out = {
        "variant": variant,
        "step_s": times,
        "step_s_median": statistics.median(times),
        "process_peak_rss_mb": _status_kb("VmHWM") / 1024,
    }
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


def fresh_process_memory(variant: str, args) -> dict:
    """`variant` run once in a new Python process: its peak RSS is the variant's alone."""
    cmd = [
        sys.executable,
        __file__,
        "--memory-run",
        variant,
        "--config",
        args.config,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ] + [x for o in args.overrides for x in ("--set", o)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[list[dict]], memory: dict[str, dict]) -> dict:
    by = {v: [r for rep in runs for r in rep if r["variant"] == v] for v in VARIANTS}
    base = {i: {r["variant"]: r for r in rep} for i, rep in enumerate(runs)}
    out = {}
    for v in VARIANTS:
        time_ratio = [
            base[i][v]["step_s_median"] / base[i]["interleave"]["step_s_median"] for i in base
        ]
        out[v] = {
            "step_ms_median": 1000 * statistics.median(r["step_s_median"] for r in by[v]),
            # a run's fastest step: the least disturbed by other work on a shared machine
            "fastest_step_ms_median": 1000 * statistics.median(min(r["step_s"]) for r in by[v]),
            "time_overhead_paired": statistics.median(time_ratio) - 1,
            "time_ratios": time_ratio,
            "peak_rss_mb": memory[v]["process_peak_rss_mb"],
            "rss_overhead": memory[v]["process_peak_rss_mb"]
            / memory["interleave"]["process_peak_rss_mb"]
            - 1,
        }
        if "peak_cuda_mb" in memory[v]:
            out[v]["peak_cuda_mb"] = memory[v]["peak_cuda_mb"]
    return out


def write_markdown(result: dict, argv: str) -> None:
    from benchmarks.report import machine, table, update_section

    s = result["summary"]
    rows = [
        [
            v,
            s[v]["step_ms_median"],
            s[v]["fastest_step_ms_median"],
            "" if v == "interleave" else f"{100 * s[v]['time_overhead_paired']:+.1f}%",
            s[v]["peak_rss_mb"],
            "" if v == "interleave" else f"{100 * s[v]['rss_overhead']:+.1f}%",
        ]
        for v in VARIANTS
    ]
    spread = {
        v: f"{100 * (min(s[v]['time_ratios']) - 1):+.0f}% .. {100 * (max(s[v]['time_ratios']) - 1):+.0f}%"
        for v in VARIANTS[1:]
    }
    body = (
        f"Command: `python benchmarks/bench_anyloop.py {argv}`  \n"
        f"Machine: {machine()}; {result['model_params']:,}-parameter model, {result['num_domains']} domains, "
        f"{result['tokens_per_step']:,} tokens per optimizer step; {result['repeats']} repeats of every variant "
        f"(one process, order rotating), {result['steps']} timed steps per run after {result['warmup']} "
        f"warm-up steps; memory from one more run of each variant in a fresh process.\n\n"
        + table(
            [
                "variant",
                "step (ms, median)",
                "fastest step of a run (ms, median)",
                "time overhead vs interleave (paired median)",
                "peak RSS, own process (MB)",
                "memory overhead vs interleave",
            ],
            rows,
        )
        + "\n\nPer-repeat time ratios to interleave (min .. max): "
        + "; ".join(f"{v} {r}" for v, r in spread.items())
        + ".\n\n"
        + result["note"]
    )
    update_section("anyloop", body)


def timed_repeat(r: int, args) -> list[dict]:
    """Every variant once, in the order rotated by `r`."""
    order = list(VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)])
    runs = [run_variant(v, args) for v in order]
    gc.collect()
    print(
        f"repeat {r + 1}/{args.repeats}: "
        + ", ".join(f"{x['variant']} {1000 * x['step_s_median']:.0f} ms" for x in runs),
        flush=True,
    )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--note", default="", help="a sentence for the table (e.g. what else the machine ran)"
    )
    parser.add_argument("--out", default="benchmarks/results/anyloop.json")
    parser.add_argument(
        "--memory-run", choices=VARIANTS, help=argparse.SUPPRESS
    )  # the fresh-process run
    parser.add_argument(
        "--reuse-timed-runs",
        action="store_true",
        help="take the timed runs from --out (measured earlier, e.g. on an idle machine) and "
        "measure only the memory",
    )
    args = parser.parse_args()
    if args.memory_run:
        run = run_variant(args.memory_run, args)
        print(json.dumps({k: v for k, v in run.items() if k != "step_s"}))
        return
    out = ROOT / args.out
    if args.reuse_timed_runs:
        runs = json.loads(out.read_text())["runs"]
        args.repeats = len(runs)
    else:
        runs = [timed_repeat(r, args) for r in range(args.repeats)]
    memory = {}
    for v in VARIANTS:
        memory[v] = fresh_process_memory(v, args)
        print(f"fresh process, {v}: peak RSS {memory[v]['process_peak_rss_mb']:.0f} MB", flush=True)
    from acodm_ray.config import load_config
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.model import build_model

    cfg = load_config(args.config, args.overrides)
    tokens, _ = load_tokenized(cfg)
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, 0)
    result = {
        "config": args.config,
        "overrides": args.overrides,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "platform": platform.platform(),
        "model_params": sum(p.numel() for p in model.parameters()),
        "num_domains": len(tokens.domains),
        "tokens_per_step": cfg.train.micro_batch_size * cfg.train.grad_accum * cfg.train.seq_len,
        "runs": runs,
        "memory_runs": memory,
        "summary": summarise(runs, memory),
        "note": args.note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    write_markdown(result, " ".join(sys.argv[1:]))
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
