"""Hyperparameters of the AC-ODM agent (DDPG with a vector critic), with the paper's defaults.

The reference uses 5 hidden layers of 1024 for the 410M/1B runs; the presets scale this down for
small proxies (see configs/).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AgentConfig:
    actor_hidden: int = 1024
    actor_layers: int = 5
    critic_hidden: int = 1024
    critic_layers: int = 5
    gamma: float = 0.95
    tau: float = 0.001
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    replay_capacity: int = 10_000
    batch_size: int = 32
    warmup_fraction: float = 0.02  # share of the proxy's training steps chosen by ODM (warm-up)
    exploration_noise: float = 1e-3  # max uniform noise subtracted from the softmax, then renormalised
    updates_per_step: int = 1
