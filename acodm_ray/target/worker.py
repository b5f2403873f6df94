"""`train_worker`: the training function every Ray Train worker of a target run executes (see the
package docstring): build the trainer, restore the latest checkpoint, ask rank 0's policy client for
weights every `target.decide_every` steps, train, evaluate, report checkpoints."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
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
from acodm_ray.loop import mixing_loop
from acodm_ray.metrics import MetricsWriter, trim_metrics
from acodm_ray.mixers import SCORE_MIXERS
from acodm_ray.mixers.base import Mixer
from acodm_ray.policy_client import PolicyClient
from acodm_ray.policy_server import PolicyServerUnavailable, max_rss_mb
from acodm_ray.rundir import trim_jsonl
from acodm_ray.step_signals import StepSignals
from acodm_ray.target.faults import inject_faults
from acodm_ray.train_step import LMTrainer

log = logging.getLogger("acodm_ray.target")

TRAINER_FILE = "trainer.pt"
RANK_FILE = "rank{rank}.pt"


class _RankLog:
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


def _event(run_dir: Path, **record: Any) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), **record}) + "\n")


def _trim_events(run_dir: Path, last_step: int) -> None:
    trim_jsonl(
        run_dir / "events.jsonl",
        lambda record: (
            record.get("event") in ("start", "resume") or record.get("step", 0) <= last_step
        ),
    )


class ServedWeights(Mixer):
    """The weights a rank trains with, as a `Mixer` for the shared `mixing_loop`: rank 0 asks the
    policy server every `target.decide_every` steps and broadcasts them, so every rank trains on the
    same mix; rank 0 passes each step's signals back. An unreachable server keeps the last weights
    (counted in `server_failures`, logged as an event) unless there are none yet."""

    name = "served"

    def __init__(
        self,
        domains: list[str],
        rank: int,
        client: PolicyClient | None,
        collective,
        decide_every: int,
        check_sync: bool,
        run_dir: Path,
        step: int,
        current: np.ndarray | None,
        server_failures: int,
    ) -> None:
        super().__init__(domains)
        self.rank, self.client, self.collective = rank, client, collective
        self.decide_every, self.check_sync, self.run_dir = decide_every, check_sync, run_dir
        self.step, self.current, self.server_failures = step, current, server_failures
        self.fresh, self.decided, self.started, self.decide_seconds = True, False, 0.0, 0.0

    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        self.started = time.perf_counter()
        self.fresh, self.decided = True, self.step % self.decide_every == 0
        if self.decided or self.current is None:
            self._receive(state)
        self.decide_seconds = time.perf_counter() - self.started
        if self.check_sync and not self.collective.same_on_all(torch.from_numpy(self.current)):
            raise RuntimeError(
                f"rank {self.rank}: domain weights differ across workers at step {self.step + 1}"
            )
        return self.current

    def _receive(self, state: np.ndarray | None) -> None:
        K = self.num_domains
        buf = torch.zeros(K + 1, dtype=torch.float64)  # weights + "valid" flag
        if self.rank == 0:
            try:
                w, self.fresh = self.client.weights(state)
                buf[:K] = torch.from_numpy(w)
                buf[K] = 1.0
            except PolicyServerUnavailable as err:  # no weights at all: fatal below, on every rank
                log.error("%s", err)
            if not self.fresh:
                self.server_failures += 1
                _event(
                    self.run_dir,
                    event="server_unreachable",
                    step=self.step + 1,
                    error=self.client.last_error,
                )
        self.collective.broadcast_(buf, 0)
        if buf[K] != 1.0:
            raise PolicyServerUnavailable(
                "the policy server is unreachable and no weights were received yet; nothing to train with"
            )
        self.current = buf[:K].numpy().copy()

    def update(self, signals: StepSignals) -> None:
        self.step = signals.step
        if self.rank == 0:
            self.client.update(signals)


def train_worker(config: dict[str, Any]) -> None:
    """The per-worker training function of `run_target` (runs in every Ray Train worker)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config.get("acodm_home"):
        os.environ["ACODM_HOME"] = config["acodm_home"]
    cfg: ExperimentConfig = from_dict(ExperimentConfig, config["cfg"])
    tc, t = cfg.target, cfg.train
    run_dir = Path(config["run_dir"])
    faults = config.get("faults") or {}
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if tc.use_gpu else torch.device("cpu")
    collective = default_collective(device)

    tokens, _ = load_tokenized(cfg)
    client = (
        PolicyClient(config["server"], tc.server_name, tc.server_namespace, tc.server_timeout_s)
        if rank == 0
        else None
    )
    # alignment scores cost a [K, P] all-reduce per step: only when the mixer learns from them
    compute_scores = (
        tc.online_acodm or tc.compute_scores or (not tc.policy and cfg.mixer.name in SCORE_MIXERS)
    )
    trainer = LMTrainer(
        cfg,
        tokens,
        seed=t.seed,
        rank=rank,
        collective=collective,
        compute_signals=compute_scores,
        device=device,
    )

    current: np.ndarray | None = None
    server_failures = 0
    last_mixer_state, last_mixer_step = None, None  # the newest mixer state received (rank 0)
    mixer_name = client.description["mixer"] if client is not None and client.description else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            payload = load_checkpoint(Path(d) / TRAINER_FILE)
            trainer.load_state_dict(payload["trainer"])
            own = Path(d) / RANK_FILE.format(rank=rank)
            if own.is_file():
                trainer.sampler.load_state_dict(load_checkpoint(own)["sampler"])
            else:
                log.warning(
                    "checkpoint has no sampler state for rank %d (world size changed from %s): its windows "
                    "restart from the seed",
                    rank,
                    payload.get("world_size"),
                )
        current = np.asarray(payload["weights"], dtype=np.float64)
        server_failures = int(payload.get("server_failures", 0))
        last_mixer_state, last_mixer_step = payload.get("mixer"), payload.get("mixer_step")
        mixer_name = mixer_name or payload.get("mixer_name")
        if rank == 0:
            if payload.get("mixer") is not None:
                if not client.load_state_dict(payload["mixer"]):
                    log.warning("could not restore the policy server's state (unreachable)")
            if not payload.get("server_ok", True):
                log.warning(
                    "the checkpoint was written while the policy server was unreachable; its mixer state "
                    "is from step %s",
                    payload.get("mixer_step"),
                )
            client.last_weights = current.copy()
    else:
        if rank == 0 and client.available:
            client.reset()  # a fresh start (or a restart before the first checkpoint)
        # same seed on every rank gives the same init; broadcast anyway so ranks can never drift
        for p in trainer.model.parameters():
            if world > 1:
                collective.broadcast_(p.data, 0)
    start_step = trainer.step_count
    rank_log = _RankLog(run_dir, rank, tc.rank_logs)
    rank_log.open(start_step)
    writer = None
    if rank == 0:
        trim_metrics(run_dir, start_step)
        _trim_events(run_dir, start_step)
        _event(
            run_dir,
            event="resume" if checkpoint is not None else "start",
            step=start_step,
            world_size=world,
        )
        writer = MetricsWriter(
            run_dir, tokens.domains, tracking=cfg.tracking, params=config["cfg"], resume=True
        )
        log.info(
            "target training: rank 0 of %d, steps %d -> %d, mixer %s",
            world,
            start_step,
            t.steps,
            client.description and client.description["mixer"],
        )
    bar = _step_bar(t.steps, start_step, mixer_name) if rank == 0 else None
    served = ServedWeights(
        tokens.domains,
        rank,
        client,
        collective,
        tc.decide_every,
        tc.check_weights_sync,
        run_dir,
        start_step,
        current,
        server_failures,
    )
    try:
        for signals in mixing_loop(trainer, served, t.steps):
            step, current = trainer.step_count, served.current
            if rank == 0:
                writer.log_step(signals)
                bar.update(1)
            rank_log.write(
                {
                    "step": step,
                    "rank": rank,
                    "weights": current.tolist(),
                    "decided": served.decided,
                    "fresh": bool(served.fresh),
                    "seconds": time.perf_counter() - served.started,
                    "decide_seconds": served.decide_seconds,
                    "max_rss_mb": max_rss_mb(),
                }
            )
            inject_faults(faults, rank, step, client)
            final = step == t.steps
            ppl = None
            if step % t.eval_every == 0 or final:
                ppl = trainer.evaluate()
                if rank == 0:
                    writer.log_eval(step, ppl)
                    log.info(
                        "step %d: loss %.4f, average val ppl %.2f",
                        step,
                        signals.loss,
                        ppl["average"],
                    )
            is_ckpt = step % t.checkpoint_every == 0 or final
            if ppl is None and not is_ckpt:
                continue
            metrics = {
                "step": step,
                "loss": signals.loss,
                "lr": signals.lr,
                "tokens": signals.tokens,
                "server_failures": served.server_failures,
                **{f"weight/{d}": float(x) for d, x in zip(tokens.domains, current)},
            }
            if ppl is not None:
                metrics.update({f"val_ppl/{k}": v for k, v in ppl.items()})
            if not is_ckpt:
                ray.train.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    mixer_state = client.state_dict()
                    if mixer_state is not None:
                        last_mixer_state, last_mixer_step = mixer_state, step
                    save_checkpoint(
                        Path(d) / TRAINER_FILE,
                        {
                            "trainer": trainer.state_dict(),
                            "mixer": last_mixer_state,
                            "mixer_step": last_mixer_step,
                            "mixer_name": mixer_name,
                            "weights": current.tolist(),
                            "server_ok": mixer_state is not None,
                            "server_failures": served.server_failures,
                            "world_size": world,
                        },
                    )
                save_checkpoint(
                    Path(d) / RANK_FILE.format(rank=rank),
                    {"sampler": trainer.sampler.state_dict(), "rank": rank, "world_size": world},
                )
                ray.train.report(
                    metrics,
                    checkpoint=ray.train.Checkpoint.from_directory(d),
                    checkpoint_dir_name=f"checkpoint_{step:08d}",
                )
            if rank == 0:
                # Wait until Ray Train has committed it (the controller registers reports when it polls
                # the workers): a worker lost after this point resumes from step `step`, not earlier.
                ray.train.get_all_reported_checkpoints(
                    consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED
                )
    finally:
        rank_log.close()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()


def _step_bar(total: int, initial: int, mixer: str | None):
    """Rank 0's progress bar over the target's steps, drawn by the driver (`ray.experimental.tqdm_ray`:
    a plain tqdm in a Train worker would print one line per refresh through the worker's log)."""
    bar = tqdm(total=total, desc=f"target steps ({mixer or 'mixer'})")
    if initial:
        bar.update(initial)
    return bar
