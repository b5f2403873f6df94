"""Run metrics: JSON lines (everything), CSV (steps and evaluations) and TensorBoard.

Every step record holds the weights, per-domain losses and scores, so weight trajectories and
validation curves can be plotted from the run directory alone.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from acodm_ray.train_step import StepSignals


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
    """Appends to metrics.jsonl, steps.csv, eval.csv and a TensorBoard event file in `run_dir`."""

    def __init__(self, run_dir: str | Path, domains: Sequence[str], tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.domains = list(domains)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        self._csv_files: dict[str, Any] = {}
        self._csv_writers: dict[str, csv.DictWriter] = {}
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _csv(self, name: str, record: dict[str, Any]) -> None:
        if name not in self._csv_writers:
            path = self.run_dir / f"{name}.csv"
            new = not path.exists() or path.stat().st_size == 0
            self._csv_files[name] = open(path, "a", newline="")
            self._csv_writers[name] = csv.DictWriter(self._csv_files[name], fieldnames=list(record), extrasaction="ignore")
            if new:
                self._csv_writers[name].writeheader()
        self._csv_writers[name].writerow(record)
        self._csv_files[name].flush()

    def _tensorboard(self, record: dict[str, Any], step: int, prefix: str) -> None:
        if self._tb is None:
            return
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tb.add_scalar(f"{prefix}/{key}", value, step)

    def log_step(self, signals: StepSignals) -> dict[str, Any]:
        record = step_record(signals, self.domains)
        self._jsonl.write(json.dumps({"kind": "step", **record}) + "\n")
        self._jsonl.flush()
        self._csv("steps", record)
        self._tensorboard(record, signals.step, "train")
        return record

    def log_eval(self, step: int, ppl: dict[str, float]) -> dict[str, Any]:
        record = {"step": step, **{f"val_ppl/{k}": v for k, v in ppl.items()}}
        self._jsonl.write(json.dumps({"kind": "eval", **record}) + "\n")
        self._jsonl.flush()
        self._csv("eval", record)
        self._tensorboard(record, step, "eval")
        return record

    def close(self) -> None:
        self._jsonl.close()
        for f in self._csv_files.values():
            f.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(step records, eval records) of a run directory."""
    steps, evals = [], []
    with open(Path(run_dir) / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            (steps if rec.pop("kind") == "step" else evals).append(rec)
    return steps, evals
