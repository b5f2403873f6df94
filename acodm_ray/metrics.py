"""Run metrics: JSON lines (everything), CSV (steps and evaluations), and the run's trackers.

Every step record holds the weights, per-domain losses and scores, so weight trajectories and
validation curves can be plotted from the run directory alone. The same records go, as scalars
(`train/<key>`, `eval/<key>`), to the trackers the config's `tracking:` section enables: TensorBoard
under the run dir, MLflow, W&B (`acodm_ray.tracking.ResultLogger`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from acodm_ray.rundir import trim_jsonl
from acodm_ray.step_signals import StepSignals
from acodm_ray.tracking import ResultLogger, TrackingConfig


def trim_metrics(run_dir: Path, last_step: int) -> None:
    """Drop records logged after the checkpoint we resume from, so no step appears twice."""
    trim_jsonl(run_dir / "metrics.jsonl", lambda record: record["step"] <= last_step)
    for name in ("steps.csv", "eval.csv"):
        csv_path = run_dir / name
        if csv_path.exists():
            lines = csv_path.read_text().splitlines()
            kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= last_step]
            csv_path.write_text("".join(line + "\n" for line in kept))


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def step_record(signals: StepSignals, domains: Sequence[str]) -> dict[str, Any]:
    """A flat, JSON-safe record of one step (NaN -> None)."""
    record: dict[str, Any] = {
        "step": signals.step,
        "loss": _finite_or_none(signals.loss),
        "lr": signals.lr,
        "grad_norm": _finite_or_none(signals.grad_norm),
        "tokens": signals.tokens,
        "seconds": signals.seconds,
    }
    for i, d in enumerate(domains):
        record[f"weight/{d}"] = float(signals.weights[i])
        record[f"loss/{d}"] = _finite_or_none(signals.losses[i])
        record[f"score/{d}"] = _finite_or_none(signals.scores[i])
        if signals.effective is not None:
            record[f"effective/{d}"] = float(signals.effective[i])
    return record


class MetricsWriter:
    """Appends to metrics.jsonl, steps.csv and eval.csv in `run_dir`, and logs every record to the
    trackers of `tracking` (default: TensorBoard only, or nothing with `tensorboard=False`).

    `params` (the resolved config) are logged when this writer starts the run's MLflow / W&B run;
    with `resume` it continues the run recorded in <run_dir>/tracking.json instead."""

    def __init__(
        self,
        run_dir: str | Path,
        domains: Sequence[str],
        tensorboard: bool = True,
        *,
        tracking: TrackingConfig | None = None,
        params: dict[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.domains = list(domains)
        self.tracker = ResultLogger(
            tracking or TrackingConfig(tensorboard=tensorboard),
            self.run_dir,
            params=params,
            resume=resume,
        )
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._csv_files: dict[str, Any] = {}
        self._csv_writers: dict[str, csv.DictWriter] = {}

    def _csv(self, name: str, record: dict[str, Any]) -> None:
        if name not in self._csv_writers:
            path = self.run_dir / f"{name}.csv"
            new = not path.exists() or path.stat().st_size == 0
            self._csv_files[name] = open(path, "a", newline="")
            self._csv_writers[name] = csv.DictWriter(
                self._csv_files[name], fieldnames=list(record), extrasaction="ignore"
            )
            if new:
                self._csv_writers[name].writeheader()
        self._csv_writers[name].writerow(record)
        self._csv_files[name].flush()

    def _track(self, record: dict[str, Any], step: int, prefix: str) -> None:
        self.tracker.log({f"{prefix}/{k}": v for k, v in record.items() if k != "step"}, step)

    def log_step(self, signals: StepSignals) -> dict[str, Any]:
        record = step_record(signals, self.domains)
        self._jsonl.write(json.dumps({"kind": "step", **record}) + "\n")
        self._jsonl.flush()
        self._csv("steps", record)
        self._track(record, signals.step, "train")
        return record

    def log_eval(self, step: int, ppl: dict[str, float]) -> dict[str, Any]:
        record = {"step": step, **{f"val_ppl/{k}": v for k, v in ppl.items()}}
        self._jsonl.write(json.dumps({"kind": "eval", **record}) + "\n")
        self._jsonl.flush()
        self._csv("eval", record)
        self._track(record, step, "eval")
        return record

    def close(self, status: str = "FINISHED") -> None:
        self._jsonl.close()
        for f in self._csv_files.values():
            f.close()
        self.tracker.close(status)


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(step records, eval records) of a run directory."""
    steps, evals = [], []
    with open(Path(run_dir) / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            (steps if rec.pop("kind") == "step" else evals).append(rec)
    return steps, evals
