"""Reading finished target runs back (`load_run`) and the comparison's summary (`summarize`): per
method, the headline figures over seeds; per run, its own numbers."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.compare.configs import proxy_config, seeds_of, target_config
from acodm_ray.compare.methods import (
    REFERENCE,
    STATIC_BASELINES,
    method_of,
    proxy_methods,
    split_method,
)
from acodm_ray.compare.plan import RunSpec
from acodm_ray.compare.stats import (
    best_point,
    decoy_weight_curve,
    headline_steps,
    is_finite_number,
    last_quarter_gain,
    mean_spread,
    overhead_pct,
    steps_to_final_of,
    steps_to_reference,
)
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.metrics import read_metrics


@dataclass
class RunData:
    """What the comparison needs from one target run directory."""

    domains: list[str]
    eval_steps: list[int]
    ppl: dict[str, list[float]]  # "average" and every domain -> values at eval_steps
    weights: np.ndarray  # [steps, K], the weights trained with at every step
    step_seconds: list[float]  # full training iteration on rank 0, per step
    mixer_seconds: list[
        float
    ]  # that iteration minus the training step inside it (paired, same step)
    worker_peak_rss_mb: float | None
    server_peak_rss_mb: float | None
    seconds: float | None  # run_target's own wall-clock
    summary: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""


def _jsonl(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if path.is_file()
        else []
    )


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    domains = list(summary["domains"])
    steps, evals = read_metrics(run_dir)
    rank0 = _jsonl(run_dir / "ranks" / "rank0.jsonl")
    train_s = {int(r["step"]): float(r["seconds"]) for r in steps if r.get("seconds") is not None}
    if rank0:
        seconds = [float(r["seconds"]) for r in rank0]
        rss = [float(r["max_rss_mb"]) for r in rank0 if r.get("max_rss_mb") is not None]
        mixer = [
            float(r["seconds"]) - train_s[int(r["step"])]
            for r in rank0
            if int(r["step"]) in train_s
        ]
    else:  # rank logs off: the training step's own time, no memory
        seconds, rss, mixer = list(train_s.values()), [], []
    keys = ["average", *domains]
    return RunData(
        domains=domains,
        eval_steps=[int(r["step"]) for r in evals],
        ppl={k: [float(r[f"val_ppl/{k}"]) for r in evals] for k in keys},
        weights=np.array([[r[f"weight/{d}"] for d in domains] for r in steps], dtype=float).reshape(
            len(steps), len(domains)
        ),
        step_seconds=seconds,
        mixer_seconds=mixer,
        worker_peak_rss_mb=max(rss) if rss else None,
        server_peak_rss_mb=(summary.get("server") or {}).get("max_rss_mb"),
        seconds=summary.get("seconds"),
        summary=summary,
        run_dir=str(run_dir),
    )


def machine() -> dict[str, Any]:
    # lazy: torch takes a second; jobs/compare.py --help imports this package
    import torch

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        # lazy: ray, for its version only; jobs/compare.py --help imports this package
        import ray

        info["ray"] = ray.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        info["memory_gb"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1
        )
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    return info


def runs_by_method(specs: list[RunSpec], runs: dict[str, RunData]) -> dict[str, dict[int, RunData]]:
    out: dict[str, dict[int, RunData]] = {}
    for s in specs:
        if s.kind == "target" and s.key in runs:
            out.setdefault(s.method, {})[s.seed] = runs[s.key]
    return out


def summarize(
    cfg: ExperimentConfig,
    specs: list[RunSpec],
    runs: dict[str, RunData],
    results: dict[str, dict],
    failures: dict[str, str],
) -> dict[str, Any]:
    methods = [m for m in cfg.compare.methods]
    by_method = runs_by_method(specs, runs)
    domains = next(iter(runs.values())).domains if runs else []
    tcfg = target_config(cfg, methods[0], cfg.compare.first_seed)
    summary: dict[str, Any] = {
        "methods": methods,
        "method_descriptions": {
            m: method_of(m).description
            + (f" (proxy size {split_method(m)[1]})" if split_method(m)[1] else "")
            for m in methods
        },
        "seeds": seeds_of(cfg),
        "domains": domains,
        "reference": REFERENCE,
        "target": {
            "model": to_dict(tcfg.model),
            "steps": tcfg.train.steps,
            "seq_len": tcfg.train.seq_len,
            "micro_batch_size": tcfg.train.micro_batch_size,
            "grad_accum": tcfg.train.grad_accum,
            "tokens_per_step": tcfg.train.seq_len
            * tcfg.train.micro_batch_size
            * tcfg.train.grad_accum
            * tcfg.target.num_workers,
            "eval_every": tcfg.train.eval_every,
            "eval_batches": tcfg.train.eval_batches,
            "num_workers": tcfg.target.num_workers,
            "cpus_per_worker": tcfg.target.cpus_per_worker,
            "state_layers": tcfg.signals.state_layers,
        },
        "failures": failures,
    }
    proxies: dict[str, dict[str, Any]] = {}
    for method in proxy_methods(methods):
        pcfg = proxy_config(cfg, cfg.compare.first_seed, method)
        stages = {
            s.seed: results[s.key]
            for s in specs
            if s.kind == "proxy" and s.method == method and s.key in results
        }
        trainer = method_of(method).trainer
        stage = {
            "model": to_dict(pcfg.model),
            "steps": pcfg.train.steps,
            "trainer": trainer,
            "algo": None,
            "mixer": None,
            "rl_iterations": None,
            "env_steps_per_iteration": None,
            "agent": None,
            "reward": None,
            "per_seed": cfg.compare.proxy_per_seed,
            "runs": {
                str(seed): {
                    "policy": r.get("policy"),
                    "wall_s": r.get("wall_s"),
                    "run_dir": r.get("run_dir"),
                }
                for seed, r in stages.items()
            },
            "wall_s": mean_spread([r.get("wall_s") for r in stages.values()]),
        }
        if trainer == "rl":
            stage.update(
                algo=pcfg.rl.algo,
                rl_iterations=pcfg.rl.iterations,
                env_steps_per_iteration=pcfg.rl.min_sample_timesteps_per_iteration,
                reward=pcfg.env.reward,
                agent={
                    k: getattr(pcfg.agent, k)
                    for k in (
                        "actor_hidden",
                        "actor_layers",
                        "critic_hidden",
                        "critic_layers",
                        "gamma",
                        "warmup_fraction",
                    )
                },
            )
        else:
            stage["mixer"] = pcfg.mixer.name
        proxies[method] = stage
    if proxies:
        summary["proxies"] = proxies
        summary["proxy"] = proxies.get("acodm") or next(iter(proxies.values()))

    static = next((m for m in STATIC_BASELINES if m in by_method), None)
    summary["static_baseline"] = static
    curves = {
        m: {seed: (r.eval_steps, r.ppl["average"]) for seed, r in by_seed.items()}
        for m, by_seed in by_method.items()
    }
    to_ref = steps_to_reference(curves) if REFERENCE in curves else {}
    to_uniform = steps_to_final_of(curves, "uniform") if "uniform" in curves else {}
    if "uniform" in curves:
        summary["uniform_last_quarter_gain"] = mean_spread(
            [last_quarter_gain(*curve) for curve in curves["uniform"].values()]
        )
    decoys = [d for d in domains if tcfg.train.eval_domains and d not in tcfg.train.eval_domains]
    summary["decoys"] = decoys
    table: dict[str, Any] = {}
    per_run: dict[str, dict[str, Any]] = {}
    for m in methods:
        by_seed = by_method.get(m, {})
        if not by_seed:
            table[m] = {"runs": 0}
            continue
        step_ms = {
            s: 1000.0 * float(np.median(r.step_seconds)) if r.step_seconds else None
            for s, r in by_seed.items()
        }
        mixer_ms = {
            s: 1000.0 * float(np.median(r.mixer_seconds)) if r.mixer_seconds else None
            for s, r in by_seed.items()
        }
        mixer_pct = {
            s: 100.0 * mixer_ms[s] / (step_ms[s] - mixer_ms[s])
            if is_finite_number(mixer_ms[s])
            and is_finite_number(step_ms[s])
            and step_ms[s] > mixer_ms[s]
            else None
            for s in by_seed
        }
        worker = {s: r.worker_peak_rss_mb for s, r in by_seed.items()}
        total = {
            s: (r.worker_peak_rss_mb + r.server_peak_rss_mb)
            if is_finite_number(r.worker_peak_rss_mb) and is_finite_number(r.server_peak_rss_mb)
            else None
            for s, r in by_seed.items()
        }
        wall = {s: results[f"{m}-seed{s}"].get("wall_s") for s in by_seed}
        final = {
            k: mean_spread([r.ppl[k][-1] if r.ppl[k] else None for r in by_seed.values()])
            for k in ["average", *domains]
        }
        best_avg = mean_spread(
            [
                (best_point(r.eval_steps, r.ppl["average"]) or (None, None))[1]
                for r in by_seed.values()
            ]
        )
        weights = np.mean([r.weights[-1] for r in by_seed.values() if len(r.weights)], axis=0)
        entry: dict[str, Any] = {
            "runs": len(by_seed),
            "final_val_ppl": final,
            "best_average_val_ppl": best_avg,
            "step_ms": mean_spread(list(step_ms.values())),
            "mixer_ms": mean_spread(list(mixer_ms.values())),
            "mixer_pct_of_step": mean_spread(list(mixer_pct.values())),
            "worker_peak_rss_mb": mean_spread(list(worker.values())),
            "peak_rss_mb": mean_spread(list(total.values())),
            "wall_s": mean_spread(list(wall.values())),
            "final_weights": {d: float(w) for d, w in zip(domains, weights)},
            "max_final_weight": {
                "domain": domains[int(np.argmax(weights))],
                "weight": float(np.max(weights)),
            },
            "max_final_weight_per_seed": {
                str(s): {
                    "domain": domains[int(np.argmax(r.weights[-1]))],
                    "weight": float(np.max(r.weights[-1])),
                }
                for s, r in by_seed.items()
                if len(r.weights)
            },
        }
        if m in to_ref:
            entry["steps_to_reference"] = headline_steps(to_ref[m])
        if m in to_uniform:
            entry["steps_to_uniform_final"] = headline_steps(to_uniform[m])
        if decoys:
            idx = [domains.index(d) for d in decoys]
            entry["decoy_weight"] = decoy_weight_curve(
                {s: r.weights for s, r in by_seed.items()}, idx
            )
        if static and m != static:
            b = by_method[static]
            entry["step_time_overhead_pct"] = overhead_pct(
                step_ms,
                {
                    s: 1000.0 * float(np.median(r.step_seconds)) if r.step_seconds else None
                    for s, r in b.items()
                },
            )
            entry["memory_overhead_pct"] = overhead_pct(
                total,
                {
                    s: (r.worker_peak_rss_mb or 0) + (r.server_peak_rss_mb or 0)
                    if is_finite_number(r.worker_peak_rss_mb)
                    and is_finite_number(r.server_peak_rss_mb)
                    else None
                    for s, r in b.items()
                },
            )
            entry["worker_memory_overhead_pct"] = overhead_pct(
                worker, {s: r.worker_peak_rss_mb for s, r in b.items()}
            )
        if m in proxies:
            entry["proxy_wall_s"] = proxies[m]["wall_s"]
        table[m] = entry
        for s, r in by_seed.items():
            per_run[f"{m}-seed{s}"] = {
                "method": m,
                "seed": s,
                "run_dir": r.run_dir,
                "final_val_ppl": {
                    k: (r.ppl[k][-1] if r.ppl[k] else None) for k in ["average", *domains]
                },
                "best_average_val_ppl": (
                    best_point(r.eval_steps, r.ppl["average"]) or (None, None)
                )[1],
                "eval_steps": r.eval_steps,
                "average_val_ppl": r.ppl["average"],
                "step_ms_median": step_ms[s],
                "mixer_ms_median": mixer_ms[s],
                "worker_peak_rss_mb": r.worker_peak_rss_mb,
                "server_peak_rss_mb": r.server_peak_rss_mb,
                "run_seconds": r.seconds,
                "wall_s": wall[s],
                "steps_to_reference": (to_ref.get(m) or {}).get(s),
                "final_weights": {d: float(w) for d, w in zip(domains, r.weights[-1])}
                if len(r.weights)
                else None,
                "agent": r.summary.get("agent"),
            }
    summary["headline"] = table
    summary["runs"] = per_run
    return summary
