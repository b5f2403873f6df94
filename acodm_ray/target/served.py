"""`ServedWeights`: the weights a target rank trains with, served by the run's `PolicyServer`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from acodm_ray.mixers.base import Mixer
from acodm_ray.policy_client import PolicyClient
from acodm_ray.policy_server import PolicyServerUnavailable
from acodm_ray.step_signals import StepSignals
from acodm_ray.target.events import event

log = logging.getLogger("acodm_ray.target")


class ServedWeights(Mixer):
    """The weights a rank trains with, as a `Mixer` for the shared `mixing_step`: rank 0 asks the
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
                event(
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
