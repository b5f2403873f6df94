"""The Gymnasium environment around proxy pretraining, registered for gymnasium and RLlib."""

from __future__ import annotations

import gymnasium as gym

from envs.data_mixing_env import DataMixingEnv, action_to_weights

GYM_ID = "acodm/DataMixing-v0"
RLLIB_ENV = "acodm-data-mixing"


def register() -> None:
    """Register under `GYM_ID` (gymnasium.make) and `RLLIB_ENV` (RLlib's env registry)."""
    if GYM_ID not in gym.registry:
        gym.register(
            id=GYM_ID, entry_point="envs.data_mixing_env:DataMixingEnv", disable_env_checker=True
        )
    # lazy: Ray Tune's registry (about a second) is for RLlib only; the env itself is plain Gymnasium
    from ray.tune.registry import register_env

    register_env(RLLIB_ENV, lambda env_config: DataMixingEnv(dict(env_config)))


__all__ = ["DataMixingEnv", "action_to_weights", "register", "GYM_ID", "RLLIB_ENV"]
