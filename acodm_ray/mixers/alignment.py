"""The gradient-alignment mixer: AC-ODM's own reward signal used greedily, with no RL.

After every step, each domain's weight is multiplied by exp(eta_t * clip(s_i)), where s_i is the
domain's raw gradient-alignment score from the training step (docs/method.md: sum over the other sampled
domains of <g_i, g_j>, divided by the mean gradient norm, before z-normalisation), then the result
is mixed with a uniform floor and renormalised:

    log w_i <- log w_i + eta_t * clip(s_i, clip_min, clip_max)
    w <- (1 - floor) * softmax(log w) + floor / K

This is DoGE's online rule (Fan et al. 2023, arXiv 2310.15393: alpha_t = softmax(log alpha_{t-1}
+ lr_t W_t / mu)), with DoGE's choices: the step size follows the LM's learning-rate schedule,
eta_t = lr_t / mu with mu = 0.001 (DoGE's `mu_train`), scores clipped at 5 (DoGE's `dw_max`), and
weights starting uniform. Two differences, both because the mixer runs online on one-domain
micro-batches: a domain not sampled in a step has no gradient (score 0, its log weight is left
alone), and the uniform floor keeps every domain sampled now and then so it can be scored at all.
Scores are clipped symmetrically, so a domain whose gradient conflicts with the others loses
weight (DoGE clips at 0 from below; set `alignment_clip_min: 0` for that).

The question it answers (issue: ablations): does the actor-critic add anything over using its own
reward directly?
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from acodm_ray.mixers.base import Mixer
from acodm_ray.step_signals import StepSignals


class AlignmentMixer(Mixer):
    name = "alignment"

    def __init__(
        self,
        domains: Sequence[str],
        mu: float = 1e-3,
        clip_min: float = -5.0,
        clip_max: float = 5.0,
        floor: float = 0.05,
    ) -> None:
        super().__init__(domains)
        if mu <= 0:
            raise ValueError(f"alignment mu must be positive, got {mu}")
        if not clip_min <= clip_max:
            raise ValueError(f"alignment clip_min ({clip_min}) must be <= clip_max ({clip_max})")
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"alignment floor must be in [0, 1], got {floor}")
        self.mu, self.clip_min, self.clip_max, self.floor = mu, clip_min, clip_max, floor
        self.log_weights = np.full(self.num_domains, -np.log(self.num_domains))
        self.t = 0

    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        z = np.exp(self.log_weights - self.log_weights.max())
        w = (1.0 - self.floor) * z / z.sum() + self.floor / self.num_domains
        return w / w.sum()

    def update(self, signals: StepSignals) -> None:
        if not signals.finite:
            return
        self.update_from_scores(signals.raw_scores, signals.lr)

    def update_from_scores(self, raw_scores: np.ndarray, lr: float) -> np.ndarray:
        """One DoGE step with learning rate `lr`; unsampled domains carry score 0."""
        s = np.asarray(raw_scores, dtype=np.float64)
        if s.shape != (self.num_domains,):
            raise ValueError(f"expected {self.num_domains} alignment scores, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"alignment scores are not finite: {s.tolist()}")
        self.log_weights = self.log_weights + (lr / self.mu) * np.clip(
            s, self.clip_min, self.clip_max
        )
        self.log_weights -= self.log_weights.max()  # keeps exp() finite; softmax is shift-invariant
        self.t += 1
        return self.weights()

    def state_dict(self) -> dict[str, Any]:
        return {"log_weights": self.log_weights.tolist(), "t": self.t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        log_weights = np.asarray(state["log_weights"], dtype=np.float64)
        if log_weights.shape != (self.num_domains,):
            raise ValueError(
                f"alignment mixer state has {log_weights.size} domains, this mixer {self.num_domains}"
            )
        self.log_weights = log_weights
        self.t = int(state["t"])
