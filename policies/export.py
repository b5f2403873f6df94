"""Export the trained AC-ODM actor as a standalone policy (safetensors + JSON, no RLlib needed).

The weights come from the learner (the trained copy, also when learners are remote), not from an
env runner's inference copy, which may lag one weight sync behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import save_policy
from policies.acodm.acodm import ACODMConfig

ACTOR_PREFIX = "actor."


def actor_from_algo(algo: Algorithm, module_id: str = DEFAULT_MODULE_ID) -> Actor:
    """A standalone `Actor` holding the learner's current actor weights."""
    if not isinstance(algo.config, ACODMConfig):
        raise ValueError(
            f"export supports acodm only (the softmax actor); got a {type(algo).__name__} "
            "algorithm. Use the RLlib checkpoint (algo.save_to_path) for other algorithms."
        )
    path = f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{module_id}"
    state = algo.learner_group.get_state(components=path, inference_only=True)
    module_state = state[COMPONENT_LEARNER][COMPONENT_RL_MODULE][module_id]
    actor_state = {
        k[len(ACTOR_PREFIX):]: torch.as_tensor(np.asarray(v))
        for k, v in module_state.items()
        if k.startswith(ACTOR_PREFIX)
    }
    if not actor_state:
        raise ValueError(f"no actor weights found in the state of module {module_id!r}")
    first = actor_state["trunk.0.weight"]
    head = actor_state["head.weight"]
    layers = sum(1 for k in actor_state if k.startswith("trunk.") and k.endswith(".weight")) // 2
    actor = Actor(int(first.shape[1]), int(head.shape[0]), int(first.shape[0]), layers)
    actor.load_state_dict(actor_state, strict=True)
    return actor.eval()


def export_actor(
    algo: Algorithm,
    out_dir: str | Path,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
    module_id: str = DEFAULT_MODULE_ID,
) -> Path:
    """Write the trained actor with `acodm_ray.agent.policy_file.save_policy`; returns the dir."""
    actor = actor_from_algo(algo, module_id)
    return save_policy(out_dir, actor, domains, state_spec, config)
