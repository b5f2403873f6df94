"""RLlib's EpisodeReplayBuffer with a seeded sampler, so the proxy stage is reproducible.

In Ray 2.60 `EpisodeReplayBuffer.__init__` draws its samples from `np.random.default_rng(seed=None)`,
which no seed reaches: two runs of the same config replay different batches and export different
actors. This subclass seeds that generator (`replay_buffer_config["seed"]`, the run's seed) and
keeps its state in checkpoints, so a resumed run replays what an uninterrupted one would.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from ray.rllib.utils.annotations import override
from ray.rllib.utils.replay_buffers.episode_replay_buffer import EpisodeReplayBuffer

RNG_STATE = "acodm_rng_state"


class SeededEpisodeReplayBuffer(EpisodeReplayBuffer):
    def __init__(self, capacity: int = 10000, *, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(capacity, **kwargs)
        self.rng = np.random.default_rng([int(seed), 11])

    @override(EpisodeReplayBuffer)
    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), RNG_STATE: json.dumps(self.rng.bit_generator.state)}

    @override(EpisodeReplayBuffer)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if RNG_STATE in state:
            self.rng.bit_generator.state = json.loads(state[RNG_STATE])
