"""`train_worker`: the training function every Ray Train worker of a target run executes (see the
package docstring), as a small trainer in the manner of torchtitan's `Trainer`: `TargetTrainer`
builds the rank's LM once, then `train()` restores the latest checkpoint and steps until the end,
evaluating and checkpointing when due. The weights come from the policy server through rank 0
(`served.ServedWeights`), the step is the shared `loop.mixing_step`."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from ray.experimental.tqdm_ray import tqdm

from acodm_ray.checkpoint import load_checkpoint, save_checkpoint
from acodm_ray.collective import default_collective
from acodm_ray.config import ExperimentConfig, from_dict
from acodm_ray.data.load import load_tokenized
from acodm_ray.loop import mixing_step
from acodm_ray.mixers import SCORE_MIXERS
from acodm_ray.policy_client import PolicyClient
from acodm_ray.policy_server import max_rss_mb
from acodm_ray.run import Run, due
from acodm_ray.step_signals import StepSignals
from acodm_ray.target.events import RankLog, event, trim_events
from acodm_ray.target.faults import inject_faults
from acodm_ray.target.served import ServedWeights
from acodm_ray.train_step import LMTrainer

log = logging.getLogger("acodm_ray.target")

TRAINER_FILE = "trainer.pt"
RANK_FILE = "rank{rank}.pt"


def train_worker(config: dict[str, Any]) -> None:
    """The per-worker training function of `run_target` (runs in every Ray Train worker)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config.get("acodm_home"):
        os.environ["ACODM_HOME"] = config["acodm_home"]
    TargetTrainer(config).train()


def computes_scores(cfg: ExperimentConfig) -> bool:
    """Alignment scores cost a [K, P] all-reduce per step: only when the mixer learns from them."""
    tc = cfg.target
    return (
        tc.online_acodm or tc.compute_scores or (not tc.policy and cfg.mixer.name in SCORE_MIXERS)
    )


class TargetTrainer:
    """One rank of a target run: its LM (`LMTrainer`, the run's seed on every rank), its collective,
    and on rank 0 the policy server's client, the metrics and the progress bar."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.cfg: ExperimentConfig = from_dict(ExperimentConfig, config["cfg"])
        self.run_dir = Path(config["run_dir"])
        self.faults = config.get("faults") or {}
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        tc = self.cfg.target
        device = ray.train.torch.get_device() if tc.use_gpu else torch.device("cpu")
        self.collective = default_collective(device)
        self.tokens, _ = load_tokenized(self.cfg)
        self.client = (
            PolicyClient(config["server"], tc.server_name, tc.server_namespace, tc.server_timeout_s)
            if self.rank == 0
            else None
        )
        self.lm = LMTrainer(
            self.cfg,
            self.tokens,
            seed=self.cfg.train.seed,
            rank=self.rank,
            collective=self.collective,
            compute_signals=computes_scores(self.cfg),
            device=device,
        )
        description = self.client.description if self.client is not None else None
        self.mixer_name = description["mixer"] if description else None
        self.mixer_state, self.mixer_step = None, None  # the newest mixer state received (rank 0)
        self.served: ServedWeights | None = None
        self.rank_log = RankLog(self.run_dir, self.rank, tc.rank_logs)
        self.writer = self.bar = None  # rank 0's, while `train` runs

    def train(self) -> None:
        """Restore (or start), then step until `train.steps`, evaluating and checkpointing when due."""
        resumed = self.restore()
        with self.logs(resumed):
            while self.lm.step_count < self.cfg.train.steps:
                signals = self.step()
                ppl = self.maybe_eval(signals)
                self.maybe_checkpoint(signals, ppl)

    # ------------------------------------------------------------------ restore

    def restore(self) -> bool:
        """Continue from Ray Train's latest checkpoint (a restarted worker group, or `--resume`): every
        rank its full state at step s, rank 0 the server's mixer state of step s; else start fresh.
        True when restored."""
        checkpoint = ray.train.get_checkpoint()
        current, server_failures = None, 0
        if checkpoint is None:
            self._start_fresh()
        else:
            payload = self._load(checkpoint)
            current = np.asarray(payload["weights"], dtype=np.float64)
            server_failures = int(payload.get("server_failures", 0))
            self.mixer_state, self.mixer_step = payload.get("mixer"), payload.get("mixer_step")
            self.mixer_name = self.mixer_name or payload.get("mixer_name")
            if self.rank == 0:
                self._restore_server(payload, current)
        tc = self.cfg.target
        self.served = ServedWeights(
            self.tokens.domains,
            self.rank,
            self.client,
            self.collective,
            tc.decide_every,
            tc.check_weights_sync,
            self.run_dir,
            self.lm.step_count,
            current,
            server_failures,
        )
        return checkpoint is not None

    def _start_fresh(self) -> None:
        if self.rank == 0 and self.client.available:
            self.client.reset()  # a fresh start (or a restart before the first checkpoint)
        # same seed on every rank gives the same init; broadcast anyway so ranks can never drift
        for p in self.lm.model.parameters():
            if self.world > 1:
                self.collective.broadcast_(p.data, 0)

    def _load(self, checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
        """trainer.pt (model, optimizer, sampler, tracker, step) and this rank's own sampler RNG."""
        with checkpoint.as_directory() as d:
            payload = load_checkpoint(Path(d) / TRAINER_FILE)
            self.lm.load_state_dict(payload["trainer"])
            own = Path(d) / RANK_FILE.format(rank=self.rank)
            if own.is_file():
                self.lm.sampler.load_state_dict(load_checkpoint(own)["sampler"])
            else:
                log.warning(
                    "checkpoint has no sampler state for rank %d (world size changed from %s): its windows "
                    "restart from the seed",
                    self.rank,
                    payload.get("world_size"),
                )
        return payload

    def _restore_server(self, payload: dict[str, Any], current: np.ndarray) -> None:
        """Rank 0: the server's mixer as of the checkpoint, and the weights in use."""
        if payload.get("mixer") is not None and not self.client.load_state_dict(payload["mixer"]):
            log.warning("could not restore the policy server's state (unreachable)")
        if not payload.get("server_ok", True):
            log.warning(
                "the checkpoint was written while the policy server was unreachable; its mixer state "
                "is from step %s",
                payload.get("mixer_step"),
            )
        self.client.last_weights = current.copy()

    # ------------------------------------------------------------------ logging

    @contextlib.contextmanager
    def logs(self, resumed: bool) -> Iterator[None]:
        """Every rank's rank log; rank 0's metrics, events and progress bar, in the run its driver
        started (`Run.join`: the tracked run continued, closed FAILED if training raises)."""
        start = self.lm.step_count
        self.rank_log.open(start)
        try:
            if self.rank != 0:
                yield
                return
            with Run.join(self.cfg, self.run_dir) as run:
                run.rewind(start)
                trim_events(self.run_dir, start)
                kind = "resume" if resumed else "start"
                event(self.run_dir, event=kind, step=start, world_size=self.world)
                self.writer = run.metrics(self.tokens.domains)
                log.info(
                    "target training: rank 0 of %d, steps %d -> %d, mixer %s",
                    self.world,
                    start,
                    self.cfg.train.steps,
                    self.mixer_name,
                )
                self.bar = _step_bar(self.cfg.train.steps, start, self.mixer_name)
                try:
                    yield
                finally:
                    self.bar.close()
        finally:
            self.rank_log.close()

    # ------------------------------------------------------------------ the step

    def step(self) -> StepSignals:
        """One step with the served weights, logged (rank 0: metrics and bar; every rank: its log)."""
        signals = mixing_step(self.lm, self.served)
        served = self.served
        if self.rank == 0:
            self.writer.log_step(signals)
            self.bar.update(1)
        self.rank_log.write(
            {
                "step": signals.step,
                "rank": self.rank,
                "weights": served.current.tolist(),
                "decided": served.decided,
                "fresh": bool(served.fresh),
                "seconds": time.perf_counter() - served.started,
                "decide_seconds": served.decide_seconds,
                "max_rss_mb": max_rss_mb(),
            }
        )
        inject_faults(self.faults, self.rank, signals.step, self.client)
        return signals

    def maybe_eval(self, signals: StepSignals) -> dict[str, float] | None:
        """Per-domain validation perplexity when due (every rank evaluates its share); rank 0 logs it."""
        t = self.cfg.train
        if not due(signals.step, t.eval_every, t.steps):
            return None
        ppl = self.lm.evaluate()
        if self.rank == 0:
            self.writer.log_eval(signals.step, ppl)
            log.info(
                "step %d: loss %.4f, average val ppl %.2f",
                signals.step,
                signals.loss,
                ppl["average"],
            )
        return ppl

    def maybe_checkpoint(self, signals: StepSignals, ppl: dict[str, float] | None) -> None:
        """Report an evaluated or checkpoint step to Ray Train, with a checkpoint when one is due. A
        checkpoint counts once every rank reported it; rank 0 waits until Ray Train committed it, so
        a worker lost after this step resumes from it, not from an older one."""
        t, step = self.cfg.train, signals.step
        checkpoint_due = due(step, t.checkpoint_every, t.steps)
        if ppl is None and not checkpoint_due:
            return
        metrics = self._report_metrics(signals, ppl)
        if not checkpoint_due:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            self._save(Path(d), step)
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(d),
                checkpoint_dir_name=f"checkpoint_{step:08d}",
            )
        if self.rank == 0:
            # the controller registers reports when it polls the workers: wait for this one
            ray.train.get_all_reported_checkpoints(
                consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
            )

    def _report_metrics(self, signals: StepSignals, ppl: dict[str, float] | None) -> dict[str, Any]:
        metrics = {
            "step": signals.step,
            "loss": signals.loss,
            "lr": signals.lr,
            "tokens": signals.tokens,
            "server_failures": self.served.server_failures,
            **{f"weight/{d}": float(x) for d, x in zip(self.tokens.domains, self.served.current)},
        }
        if ppl is not None:
            metrics.update({f"val_ppl/{k}": v for k, v in ppl.items()})
        return metrics

    def _save(self, d: Path, step: int) -> None:
        """trainer.pt (rank 0: the LM, the newest mixer state, the weights in use, the server's
        health) and rank<r>.pt (every rank: its own sampler RNG)."""
        if self.rank == 0:
            mixer_state = self.client.state_dict()
            if mixer_state is not None:
                self.mixer_state, self.mixer_step = mixer_state, step
            save_checkpoint(
                d / TRAINER_FILE,
                {
                    "trainer": self.lm.state_dict(),
                    "mixer": self.mixer_state,
                    "mixer_step": self.mixer_step,
                    "mixer_name": self.mixer_name,
                    "weights": self.served.current.tolist(),
                    "server_ok": mixer_state is not None,
                    "server_failures": self.served.server_failures,
                    "world_size": self.world,
                },
            )
        save_checkpoint(
            d / RANK_FILE.format(rank=self.rank),
            {"sampler": self.lm.sampler.state_dict(), "rank": self.rank, "world_size": self.world},
        )


def _step_bar(total: int, initial: int, mixer: str | None):
    """Rank 0's progress bar over the target's steps, drawn by the driver (`ray.experimental.tqdm_ray`:
    a plain tqdm in a Train worker would print one line per refresh through the worker's log)."""
    bar = tqdm(total=total, desc=f"target steps ({mixer or 'mixer'})")
    if initial:
        bar.update(initial)
    return bar
