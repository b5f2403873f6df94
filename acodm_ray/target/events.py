"""What a target run records besides its metrics: events.jsonl (rank 0: the run's start and every
resume, each decision the policy server missed) and ranks/rank<r>.jsonl (every rank: the weights it
trained with at every step, and how long the step took), both trimmed on resume like the metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from acodm_ray.rundir import trim_jsonl

EVENTS_FILE = "events.jsonl"


def event(run_dir: Path, **record: Any) -> None:
    """Append one event to events.jsonl, stamped with the wall-clock time."""
    with open(run_dir / EVENTS_FILE, "a") as f:
        f.write(json.dumps({"time": time.time(), **record}) + "\n")


def trim_events(run_dir: Path, last_step: int) -> None:
    """On resume: drop the events after `last_step`; every start and resume stays, so the file tells
    how often the run was restarted."""
    trim_jsonl(
        run_dir / EVENTS_FILE,
        lambda record: (
            record.get("event") in ("start", "resume") or record.get("step", 0) <= last_step
        ),
    )


class RankLog:
    """ranks/rank<r>.jsonl: the weights each rank trained with at every step (and whether rank 0 got
    them fresh from the server)."""

    def __init__(self, run_dir: Path, rank: int, enabled: bool) -> None:
        self.path = run_dir / "ranks" / f"rank{rank}.jsonl"
        self.enabled = enabled
        self._f = None

    def open(self, last_step: int) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trim_jsonl(self.path, lambda record: record["step"] <= last_step)
        self._f = open(self.path, "a")

    def write(self, record: dict[str, Any]) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
