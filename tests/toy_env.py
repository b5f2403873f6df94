"""A cheap stand-in for DataMixingEnv with the same interface (tests of policies/ only).

observation: Box(-inf, inf, (3K + 2L + 1,)) laid out like the real state (losses, loss deltas,
samples seen, L tracked norms, their changes, progress); action: Box(0, 1, (K,)), executed as
w = (a + eps) / sum(a + eps). Each domain has a fixed "usefulness"; its score s_i is that
usefulness plus a little noise, so the reward sum_i w_i s_i is highest for a mix concentrated on
domain 0. For its first `warmup_steps` steps the env's own warm-up mixer (uniform here, ODM in
the real env) chooses the weights and says so in info["warmup"].
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class ToyMixEnv(gym.Env):
    metadata: dict[str, Any] = {}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        self.k = int(config.get("num_domains", 3))
        self.l = int(config.get("num_tracked", 2))
        self.max_steps = int(config.get("max_steps", 16))
        self.warmup_steps = int(config.get("warmup_steps", 0))
        self.eps = float(config.get("action_epsilon", 1e-6))
        self.noise = float(config.get("score_noise", 0.05))
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, (3 * self.k + 2 * self.l + 1,), np.float32
        )
        self.action_space = gym.spaces.Box(0.0, 1.0, (self.k,), np.float32)
        self.usefulness = np.linspace(1.0, -1.0, self.k).astype(np.float32)
        self._rng = np.random.default_rng(int(config.get("seed", 0)))
        self.t = 0

    def _obs(self) -> np.ndarray:
        progress = np.array([100.0 * self.t / self.max_steps], np.float32)
        return np.concatenate(
            [self.losses, self.delta, self.seen, self.norms, self.dnorms, progress]
        ).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self.losses = np.full(self.k, 2.0, np.float32)
        self.delta = np.zeros(self.k, np.float32)
        self.seen = np.zeros(self.k, np.float32)
        # A little noise in the tracked norms makes every (s, s') pair unique (tests match rows).
        self.norms = (1.0 + 0.01 * self._rng.standard_normal(self.l)).astype(np.float32)
        self.dnorms = np.zeros(self.l, np.float32)
        return self._obs(), {}

    def step(self, action):
        warmup = self.t < self.warmup_steps
        if warmup:
            w = np.full(self.k, 1.0 / self.k, np.float32)
        else:
            a = np.clip(np.asarray(action, np.float32), 0.0, 1.0) + self.eps
            w = (a / a.sum()).astype(np.float32)
        scores = (self.usefulness + self.noise * self._rng.standard_normal(self.k)).astype(
            np.float32
        )
        reward = float(np.dot(w, scores))
        new_losses = (self.losses * (1.0 - 0.05 * w * (1.0 + self.usefulness))).astype(np.float32)
        self.delta = new_losses - self.losses
        self.losses = new_losses
        self.seen = 8.0 * w
        self.dnorms = (0.01 * w[: self.l].sum() * np.ones(self.l)).astype(np.float32)
        self.norms = (self.norms + self.dnorms + 1e-3 * self._rng.standard_normal(self.l)).astype(
            np.float32
        )
        self.t += 1
        info = {
            "scores": scores,
            "weights": w,
            "losses": self.losses.copy(),
            "warmup": bool(warmup),
        }
        return self._obs(), reward, False, self.t >= self.max_steps, info
