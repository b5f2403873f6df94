"""A finished target run read back from its directory (`load_run`): what the summary and the plots
need of it, and the runs grouped by method and seed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.compare.plan import RunSpec
from acodm_ray.metrics import read_metrics


@dataclass
class RunData:
    """What the comparison needs from one target run directory."""

    domains: list[str]
    eval_steps: list[int]
    ppl: dict[str, list[float]]  # "average" and every domain -> values at eval_steps
    weights: np.ndarray  # [steps, K], the weights trained with at every step
    step_seconds: list[float]  # full training iteration on rank 0, per step
    # that iteration minus the training step inside it (paired, same step)
    mixer_seconds: list[float]
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
    """A target run from its summary.json, metrics and rank 0's log (iteration times and memory;
    without rank logs, the training step's own time and no memory)."""
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


def runs_by_method(specs: list[RunSpec], runs: dict[str, RunData]) -> dict[str, dict[int, RunData]]:
    """{method: {seed: run}} of the target runs that finished, in the plan's order."""
    out: dict[str, dict[int, RunData]] = {}
    for s in specs:
        if s.kind == "target" and s.key in runs:
            out.setdefault(s.method, {})[s.seed] = runs[s.key]
    return out
