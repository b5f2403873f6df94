"""One run's lifecycle, written once for every stage that trains: `acodm pretrain`
(`acodm_ray.pretrain`), the proxy stage (`policies/run.py`), the target (`acodm_ray.target`, whose
Ray Train rank 0 joins its driver's run) and the comparison (`acodm_ray.compare.schedule`).

Why one object: each of the four used to spell the same rules out on its own, and a rule kept by
three of them is a rule a user cannot rely on. The rules:

- a missing tracking package stops the run before anything is written (`require_backends`);
- the run dir is new, resumed or, when asked, overwritten; a finished run is never clobbered
  (`acodm_ray.rundir`);
- config.yaml is the config the run started with: a resumed run keeps it (`snapshot`);
- one tracked run (MLflow / W&B) per run dir, continued on resume (`track`, `metrics`, or
  `register` when the logging happens in other processes);
- on resume, every log drops what was written after the checkpoint the run continues from, so no
  step appears twice (`rewind`); evaluations and checkpoints fall every N steps and at the last
  (`due`), so a finished run ends on both;
- an exception closes the tracked run as FAILED and touches no checkpoint, so `--resume` continues
  from the last one: what was trained is never lost;
- the end: summary.json, the artifacts, the tracked run closed FINISHED (`finish`); the job then
  prints the stage's closing lines (`print_closing`).

    with Run.start(cfg, run_dir, resume=resume, overwrite=overwrite) as run:
        trainer = ...                              # built; restored when run.resume
        run.snapshot()
        writer = run.metrics(domains)
        for step in ...:                           # the stage's own loop
            if due(step, cfg.train.checkpoint_every, cfg.train.steps): ...
        return run.finish(summary, {"model": model_dir, "summary": run.summary_path})
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acodm_ray.config import to_dict
from acodm_ray.metrics import MetricsWriter, trim_metrics
from acodm_ray.rundir import prepare_run_dir, write_config, write_json
from acodm_ray.tracking import ResultLogger, TrackingConfig, require_backends

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def due(step: int, every: int, last: int) -> bool:
    """Whether `step` evaluates (or checkpoints): every `every` steps, and at the `last` whatever
    `every` is, so a finished run always ends on an evaluation and a checkpoint."""
    return step % every == 0 or step == last


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The summary.json a finished run wrote, or None when it has none (it did not finish)."""
    path = Path(run_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def print_closing(job: str, lines: Sequence[str], warnings: Sequence[str] = ()) -> None:
    """A job's last words: what it reached on stdout, what went wrong on stderr, each line named by
    `job` (no name: the lines as they are)."""
    prefix = f"{job}: " if job else ""
    for line in lines:
        print(prefix + line)
    for line in warnings:
        print(prefix + line, file=sys.stderr)


@dataclass
class Run:
    """A run directory from its config snapshot to its summary (module docstring): `start` one, or
    `join` the one another process started; use it as a context manager so an exception closes the
    tracked run as FAILED."""

    cfg: Any
    """The run's `ExperimentConfig`: its tracking section and the params the tracked run records."""
    dir: Path
    resume: bool = False
    """Continuing a run: its config.yaml is kept and its tracked run continued."""
    tracker: ResultLogger | None = field(default=None, init=False)
    _writer: MetricsWriter | None = field(default=None, init=False, repr=False)
    _registered: bool = field(default=False, init=False, repr=False)

    @classmethod
    def start(
        cls, cfg: Any, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False
    ) -> Run:
        """A new run in `run_dir`, or the one there when `resume` (refused when that dir holds a
        run and neither `resume` nor `overwrite` says what to do with it)."""
        require_backends(cfg)  # a missing tracking package stops the run before anything is written
        return cls(cfg, prepare_run_dir(run_dir, resume=resume, overwrite=overwrite), resume)

    @classmethod
    def join(cls, cfg: Any, run_dir: str | Path) -> Run:
        """The run another process started (a target's rank 0 joins its driver's): nothing is
        prepared or snapshotted here, and the tracked run is continued."""
        return cls(cfg, Path(run_dir), resume=True)

    @property
    def summary_path(self) -> Path:
        return self.dir / SUMMARY_FILE

    def snapshot(self, *, replace: bool = False) -> None:
        """Write the run's config to config.yaml. A resumed run keeps the one it started with, unless
        `replace` (a comparison records the config of its latest invocation)."""
        if replace or not self.resume:
            write_config(self.dir, self.cfg)

    def rewind(self, step: int) -> None:
        """On resume: drop the step and evaluation records logged after `step`, the checkpoint the
        run continues from (a run stopped between logging a step and checkpointing it)."""
        trim_metrics(self.dir, step)

    def track(self, cfg: Any = None) -> ResultLogger:
        """This process's tracker for the run (TensorBoard, MLflow, W&B as `cfg.tracking` says), the
        config as its params (default: the run's; the proxy stage's is the config with its prepared
        corpus); closed by `finish`, or FAILED on an exception."""
        cfg = self.cfg if cfg is None else cfg
        self.tracker = ResultLogger(cfg, self.dir, params=to_dict(cfg), resume=self.resume)
        return self.tracker

    def metrics(self, domains: Sequence[str]) -> MetricsWriter:
        """The run's step and evaluation records (metrics.jsonl, steps.csv, eval.csv) with its tracker
        (as `track`): what a stage that trains an LM itself logs through."""
        self._writer = MetricsWriter(
            self.dir,
            domains,
            tracking=self.cfg.tracking,
            params=to_dict(self.cfg),
            resume=self.resume,
        )
        self.tracker = self._writer.tracker
        return self._writer

    def register(self) -> None:
        """Create (resumed: continue) the tracked run, with the config as its params, for a run whose
        logging happens in other processes (the target's rank 0, the comparison's own runs). W&B is
        left to the process that logs (every wandb.init costs seconds), TensorBoard to the writers."""
        ResultLogger(
            dataclasses.replace(self.cfg.tracking, wandb=False),
            self.dir,
            params=to_dict(self.cfg),
            resume=self.resume,
            tensorboard=False,
        ).close()
        self._registered = True

    def finish(
        self,
        summary: dict[str, Any],
        artifacts: dict[str, Any],
        scalars: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write summary.json, log `scalars` (at step 0) and upload `artifacts` (as
        `ResultLogger.log_artifacts` takes them) to the tracked run, close it; returns `summary`."""
        write_json(self.summary_path, summary)
        tracker = self.tracker or self._continue_tracked_run(self.cfg.tracking)
        self.tracker = tracker
        if scalars:
            tracker.log(scalars, step=0)
        tracker.log_artifacts(artifacts)
        self.close()
        return summary

    def close(self, status: str = "FINISHED") -> None:
        """Close what this process has open for the run (idempotent)."""
        if self._writer is not None:
            self._writer.close(status)  # closes its tracker too
        elif self.tracker is not None:
            self.tracker.close(status)
        self._writer = self.tracker = None

    def _continue_tracked_run(self, tracking: TrackingConfig) -> ResultLogger:
        """The tracked run reopened by this process to finish it (no TensorBoard: nothing to plot)."""
        return ResultLogger(
            tracking,
            self.dir,
            params=to_dict(self.cfg),
            resume=True,
            tensorboard=False,
        )

    def _fail(self) -> None:
        """Close the tracked run as FAILED: the one this process holds, else a registered one (MLflow
        only: a W&B run is finished by the process that logs into it)."""
        if self.tracker is None and self._registered and self.cfg.tracking.mlflow:
            self.tracker = self._continue_tracked_run(
                dataclasses.replace(self.cfg.tracking, wandb=False)
            )
        self.close("FAILED")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self._fail()
        except Exception as err:  # never hide why the run failed behind a tracker's error
            log.warning("could not mark the tracked run of %s as FAILED: %s", self.dir, err)
