"""ODM (Albalak et al. 2023, arXiv 2312.02406): online data mixing as a multi-armed bandit.

Each domain is an arm; its reward is its mean training loss in the step (only the domains sampled
in the step are updated). Both update rules of the ODM code (alon-albalak/online-data-mixing,
megatron/data/data_sampling_utils.py, `group_update`) are here:

- `smoothed_mean` (the released 1B run and AC-ODM's warm-up, alpha = 0.5):
    R_i <- alpha R_i + (1 - alpha) exp(L_i);  p_i = (1 - K eps_t) R_i / sum_j R_j + eps_t
- `exp3` (the paper's textbook EXP3):
    R_i <- R_i + (L_i / 10) / p_i;  p_i = (1 - K eps_t) exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t
with eps_t = min(1/K, sqrt(ln K / (K t))), eps_0 = 1/K, t the number of updates so far, and p
renormalised. Weights start at the natural proportions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np

from acodm_ray.config_train import OdmVariant
from acodm_ray.mixers.base import Mixer
from acodm_ray.sampler import check_weights
from acodm_ray.step_signals import StepSignals


def exploration_rate(num_domains: int, t: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t)))."""
    return min(1.0 / num_domains, math.sqrt(math.log(num_domains) / (num_domains * t)))


class ODMMixer(Mixer):
    name = "odm"

    def __init__(
        self,
        domains: Sequence[str],
        initial: np.ndarray,
        variant: str = "smoothed_mean",
        alpha: float = 0.5,
    ) -> None:
        super().__init__(domains)
        if variant not in get_args(OdmVariant):
            raise ValueError(
                f"unknown ODM variant {variant!r}; choose {' or '.join(get_args(OdmVariant))}"
            )
        self.variant = variant
        self.alpha = alpha
        self.probabilities = check_weights(initial, self.domains).copy()
        self.estimated_reward = np.zeros(self.num_domains)
        self.eps = 1.0 / self.num_domains
        self.t = 0

    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        return self.probabilities.copy()

    def update(self, signals: StepSignals) -> None:
        self.update_from_losses(signals.losses)

    def update_from_losses(self, losses: np.ndarray) -> np.ndarray:
        """One bandit update; `losses` holds NaN for the domains not sampled in the step."""
        losses = np.asarray(losses, dtype=np.float64)
        if losses.shape != (self.num_domains,):
            raise ValueError(f"expected {self.num_domains} losses, got shape {losses.shape}")
        sampled = np.isfinite(losses)
        if not sampled.any():
            return self.weights()
        K = self.num_domains
        self.t += 1
        prev_eps, self.eps = self.eps, exploration_rate(K, self.t)
        if self.variant == "smoothed_mean":
            r = self.estimated_reward
            r[sampled] = self.alpha * r[sampled] + (1 - self.alpha) * np.exp(losses[sampled])
            w = (1 - K * self.eps) * r / r.sum() + self.eps
        else:
            self.estimated_reward[sampled] += (losses[sampled] / 10.0) / self.probabilities[sampled]
            logits = prev_eps * self.estimated_reward
            expo = np.exp(logits - logits.max())  # same ratio as the reference, without overflow
            w = (1 - K * self.eps) * expo / expo.sum() + self.eps
        self.probabilities = w / w.sum()
        return self.weights()

    def state_dict(self) -> dict[str, Any]:
        return {
            "probabilities": self.probabilities.tolist(),
            "estimated_reward": self.estimated_reward.tolist(),
            "eps": self.eps,
            "t": self.t,
            "variant": self.variant,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["variant"] != self.variant:
            raise ValueError(
                f"ODM state is for variant {state['variant']!r}, this mixer is {self.variant!r}"
            )
        self.probabilities = np.asarray(state["probabilities"], dtype=np.float64)
        self.estimated_reward = np.asarray(state["estimated_reward"], dtype=np.float64)
        self.eps = float(state["eps"])
        self.t = int(state["t"])
