"""DataMixingEnv: proxy LM pretraining as a Gymnasium environment.

- reset(): a fresh proxy LM (seeded from the env's RNG, so `reset(seed=s)` is reproducible);
- step(action): map the action to domain weights on the simplex, train `steps_per_action` optimizer
  steps through the shared training step, observe the state of docs/method.md (3K + 2L + 1), and
  reward r = sum_i w_i s_i with s the per-domain gradient-alignment scores of `signals.score`
  (unscored domains, NaN, count 0 in r; `env.reward: loss`, an ablation: s_i is instead the
  z-normalised decrease of domain i's training loss);
- info: the per-domain scores (the vector reward of AC-ODM's critic) with `scored` (0 where a domain
  got no score this step: 0 in `scores`, masked out of the critic's loss by the learner), losses,
  counts, the weights actually used and the effective mix trained on (`train.coverage`), their
  entropy, plus `warmup` (ODM chose the weights) and `nonfinite_loss`;
- the episode is truncated at the proxy's training budget (`train.steps` optimizer steps); a NaN or
  infinite loss terminates it with `info["nonfinite_loss"] = True` instead of crashing a learner.

Action mappings (`env.action_mapping`, computed by `acodm_ray.actions.action_to_weights`, which
exported policies replay too):
- "simplex" (default): `Box(0, 1, (K,))`, w = (max(a, 0) + eps) / sum(max(a, 0) + eps). AC-ODM's
  softmax output passes through unchanged; PPO/SAC/APPO work with RLlib's `normalize_actions`.
- "softmax": `Box(-limit, limit, (K,))` logits, w = softmax(a); for algorithms whose actions are
  unbounded Gaussian samples and should stay away from the simplex's corners.

Warm-up: for the first `warmup_decisions` steps of each episode the env's ODM mixer chooses the
weights (docs/method.md: AC-ODM warms up on ODM); the weights used are always reported in `info`, so an
off-policy learner stores what was executed. ODM keeps learning from every step either way.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from acodm_ray.actions import action_to_weights
from acodm_ray.config import ExperimentConfig, from_dict
from acodm_ray.data.load import load_tokenized
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.model import state_layer_indices
from acodm_ray.signals import loss_decrease_scores, state_dim
from acodm_ray.train_step import LMTrainer

SOFTMAX_LIMIT = 10.0


def _mean_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Entry-wise mean over steps of the scored values; NaN where no step scored the domain."""
    stack = np.stack(rows)
    seen = np.isfinite(stack).sum(axis=0)
    total = np.nansum(stack, axis=0)
    return np.where(seen > 0, total / np.maximum(seen, 1), np.nan)


def observation_space(
    num_domains: int, num_tracked: int, z_clip: float, progress_scale: float
) -> gym.spaces.Box:
    """Feature groups are z-normalised and clipped to [-z_clip, z_clip]; progress is in [0, scale]."""
    dim = state_dim(num_domains, num_tracked)
    low = np.full(dim, -z_clip, dtype=np.float32)
    high = np.full(dim, z_clip, dtype=np.float32)
    low[-1], high[-1] = 0.0, progress_scale
    return gym.spaces.Box(low, high, dtype=np.float32)


def experiment_from(config: dict[str, Any] | ExperimentConfig) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    return from_dict(ExperimentConfig, dict(config), "env_config.experiment")


class DataMixingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        """`config` (RLlib's env_config): {"experiment": ExperimentConfig or its dict,
        "warmup_decisions": int, "action_mapping": "simplex" | "softmax"}."""
        config = dict(config or {})
        self.cfg = experiment_from(config.get("experiment", {}))
        self.warmup_decisions = int(config.get("warmup_decisions", 0))
        self.mapping = config.get("action_mapping", "simplex")
        self.tokens, _ = load_tokenized(self.cfg)
        self.domains = list(self.tokens.domains)
        K = len(self.domains)
        self.num_tracked = len(
            state_layer_indices(self.cfg.model.num_layers, self.cfg.signals.state_layers)
        )
        self.observation_space = observation_space(
            K, self.num_tracked, self.cfg.signals.z_clip, self.cfg.signals.progress_scale
        )
        if self.mapping == "simplex":
            self.action_space = gym.spaces.Box(0.0, 1.0, (K,), np.float32)
        elif self.mapping == "softmax":
            self.action_space = gym.spaces.Box(-SOFTMAX_LIMIT, SOFTMAX_LIMIT, (K,), np.float32)
        else:
            raise ValueError(f"unknown action mapping {self.mapping!r}; choose simplex or softmax")
        self.trainer: LMTrainer | None = None
        self.odm: ODMMixer | None = None
        self.decisions = 0

    @property
    def max_decisions(self) -> int:
        return math.ceil(self.cfg.train.steps / self.cfg.env.steps_per_action)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        proxy_seed = int(self.np_random.integers(0, 2**31 - 1))
        # the per-domain gradient copies behind the alignment scores are only needed when they are the reward
        self.trainer = LMTrainer(
            self.cfg,
            self.tokens,
            seed=proxy_seed,
            compute_signals=self.cfg.env.reward == "alignment",
        )
        if self.trainer.tracker.num_tracked != self.num_tracked:
            raise ValueError(
                f"the model tracks {self.trainer.tracker.num_tracked} matrices, the env expected "
                f"{self.num_tracked}; set model.num_layers consistently"
            )
        self.odm = ODMMixer(
            self.domains,
            self.tokens.natural_proportions(),
            self.cfg.mixer.odm_variant,
            self.cfg.mixer.odm_alpha,
        )
        self.decisions = 0
        self.last_losses = np.full(len(self.domains), np.nan)
        return self.trainer.last_state.copy(), {"domains": self.domains, "proxy_seed": proxy_seed}

    def step(self, action):
        if self.trainer is None:
            raise RuntimeError("call reset() before step()")
        if self.trainer.step_count >= self.cfg.train.steps:
            raise RuntimeError(
                "the proxy's training budget is spent: the episode is over, call reset()"
            )
        warmup = self.decisions < self.warmup_decisions
        if warmup:
            weights = self.odm.weights()
        else:
            weights = action_to_weights(
                np.reshape(action, -1), self.mapping, self.cfg.env.action_epsilon
            )
        rewards, scores, effective = [], [], []
        signals = None
        for _ in range(self.cfg.env.steps_per_action):
            signals = self.trainer.step(weights)
            if not signals.finite:
                break
            self.odm.update(signals)
            step_scores = self._reward_vector(signals)
            scores.append(step_scores)
            effective.append(signals.effective)
            rewards.append(float(np.nansum(weights * step_scores)))
            if self.trainer.step_count >= self.cfg.train.steps:
                break
        self.decisions += 1
        nonfinite = not signals.finite
        K = len(self.domains)
        step_vector = _mean_rows(scores) if scores else np.zeros(K)
        mix = np.mean(effective, axis=0) if effective else weights
        info = {
            "scores": np.nan_to_num(step_vector, nan=0.0).astype(np.float32),
            "scored": np.isfinite(step_vector).astype(np.float32),
            "weights": weights.astype(np.float32),
            "effective": np.asarray(mix, dtype=np.float32),
            "entropy": float(-(weights * np.log(np.maximum(weights, 1e-12))).sum()),
            "losses": np.nan_to_num(signals.losses, nan=0.0).astype(np.float32),
            "counts": signals.counts.astype(np.float32),
            "loss": float(signals.loss),
            "warmup": warmup,
            "nonfinite_loss": nonfinite,
            "step": self.trainer.step_count,
        }
        obs = np.nan_to_num(signals.state, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        reward = float(np.mean(rewards)) if rewards else 0.0
        terminated = nonfinite
        truncated = not nonfinite and self.trainer.step_count >= self.cfg.train.steps
        return obs, reward, terminated, truncated, info

    def _reward_vector(self, signals) -> np.ndarray:
        """The per-domain reward of a step: alignment scores (docs/method.md), or with `env.reward: loss`
        the ablation's per-domain loss decrease since each domain was last sampled."""
        if self.cfg.env.reward == "alignment":
            return signals.scores
        sampled = np.isfinite(signals.losses)
        out = loss_decrease_scores(self.last_losses, signals.losses, self.cfg.signals.z_clip)
        self.last_losses = np.where(sampled, signals.losses, self.last_losses)
        return out

    def evaluate(self) -> dict[str, float]:
        """Per-domain validation perplexity of the current proxy."""
        if self.trainer is None:
            raise RuntimeError("call reset() before evaluate()")
        return self.trainer.evaluate()
