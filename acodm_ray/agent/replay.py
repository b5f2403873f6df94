"""A small numpy ring buffer of 1-step transitions for the online AC-ODM agent (non-proxy mode).

`acodm_ray` is the RLlib-free core (docs/design.md: the policy server and the Ray Train workers must not
pull in RLlib), so RLlib's replay buffers are out of reach here; this is the minimal uniform
replay DDPG needs: fixed capacity, oldest transition overwritten first, uniform sampling with
replacement from a seeded generator, and a checkpointable state (tensors + a JSON RNG state, so
it loads with torch's `weights_only=True`).

A transition is (state_t, executed weights_t, vector reward r_t = per-domain scores (NaN = not
scored), state_{t+1}, done, behaviour = 1 if ODM chose the weights).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

FIELDS = ("obs", "actions", "rewards", "next_obs", "dones", "behaviour")


class ReplayBuffer:
    def __init__(self, capacity: int, state_dim: int, num_domains: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.state_dim = int(state_dim)
        self.num_domains = int(num_domains)
        self.obs = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, num_domains), dtype=np.float32)
        self.rewards = np.zeros((capacity, num_domains), dtype=np.float32)
        self.next_obs = np.zeros((capacity, state_dim), dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.behaviour = np.zeros(capacity, dtype=np.float32)
        self.ptr = 0  # next slot to write
        self.size = 0
        self.added = 0  # transitions ever added
        self.rng = np.random.default_rng([seed, 7])

    def __len__(self) -> int:
        return self.size

    def add(
        self, obs, action, reward, next_obs, done: bool = False, behaviour: bool = False
    ) -> None:
        obs, action = (
            np.asarray(obs, np.float32).reshape(-1),
            np.asarray(action, np.float32).reshape(-1),
        )
        reward, next_obs = (
            np.asarray(reward, np.float32).reshape(-1),
            np.asarray(next_obs, np.float32).reshape(-1),
        )
        if obs.shape != (self.state_dim,) or next_obs.shape != (self.state_dim,):
            raise ValueError(
                f"states must have {self.state_dim} entries, got {obs.shape} and {next_obs.shape}"
            )
        if action.shape != (self.num_domains,) or reward.shape != (self.num_domains,):
            raise ValueError(
                f"action and reward must have {self.num_domains} entries, got {action.shape} and {reward.shape}"
            )
        i = self.ptr
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i] = (
            obs,
            action,
            reward,
            next_obs,
        )
        self.dones[i] = float(done)
        self.behaviour[i] = float(behaviour)
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """`batch_size` transitions drawn uniformly with replacement, as float32 tensors."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in FIELDS}

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: torch.from_numpy(getattr(self, name)[: self.size].copy()) for name in FIELDS},
            "ptr": self.ptr,
            "size": self.size,
            "added": self.added,
            "capacity": self.capacity,
            "rng": json.dumps(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"replay state has capacity {state['capacity']}, this buffer {self.capacity}"
            )
        size = int(state["size"])
        for name in FIELDS:
            arr = getattr(self, name)
            arr[:] = 0
            if name in state:  # "behaviour" is absent from states saved before it existed
                arr[:size] = state[name].numpy()
        self.ptr, self.size, self.added = int(state["ptr"]), size, int(state["added"])
        self.rng.bit_generator.state = json.loads(state["rng"])
