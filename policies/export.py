"""Export a trained mixing policy as a standalone policy (safetensors + JSON, no RLlib needed).

`export_policy` dispatches on the algorithm:
- AC-ODM (`ACODMConfig`): the softmax actor, policy kind "actor" (`export_actor`);
- PPO, APPO, SAC with RLlib's default MLP module: policy kind "mlp", the deterministic action as
  RLlib's env runner computes it, rebuilt from a few fields by `acodm_ray.agent.policy_nets.MLPPolicy`:
    module.forward_inference -> ACTION_DIST_INPUTS                (the actor's MLP: encoder + pi head)
    -> the inference distribution's deterministic action          (GetActions, explore=False)
         TorchDiagGaussian (PPO, APPO): loc = first half of the inputs
         TorchSquashedGaussian (SAC): loc squashed, ((tanh(loc) + 1) / 2) * 2 - 1 clamped to [-1, 1]
           (`sac_action="squashed"`, the default: the mode of SAC's tanh-squashed Gaussian), or the raw
           loc (`sac_action="loc"`: what RLlib 2.60's TorchSquashedGaussian.to_deterministic() returns,
           ray issue #51544)
    -> NormalizeAndClipActions: unsquash_action (normalize_actions=True): clip(low + (a + 1) *
         (high - low) / 2, low, high), or clip_action (clip_actions=True)
    -> the env's acodm_ray.actions.action_to_weights(a, action_mapping, env.action_epsilon).

The weights come from the learner (the trained copy, also when learners are remote), not from an
env runner's inference copy, which may lag one weight sync behind: the env runner's module only
supplies the structure, its copy is given the learner's weights, and the exported policy is checked
against that copy's forward_inference before it is written.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.algorithms.sac.torch.default_sac_torch_rl_module import DefaultSACTorchRLModule
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import (
    TorchDiagGaussian,
    TorchSquashedGaussian,
)
from ray.rllib.core.models.torch.encoder import TorchActorCriticEncoder, TorchMLPEncoder
from ray.rllib.core.models.torch.heads import TorchFreeLogStdMLPHead, TorchMLPHead
from torch import nn

from acodm_ray.actions import ACTION_MAPPINGS
from acodm_ray.agent.config import floor_per_domain
from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import save_mlp_policy, save_policy
from acodm_ray.agent.policy_nets import ACTIVATIONS, MLPPolicy, MLPSpec, network_fields
from acodm_ray.config import EnvConfig
from envs.data_mixing_env import experiment_from
from policies.acodm.acodm import ACODMConfig

ACTOR_PREFIX = "actor."
MLP_CONFIGS = (PPOConfig, APPOConfig, SACConfig)  # checked after ACODMConfig (a SACConfig subclass)
SAC_ACTIONS = ("squashed", "loc")
_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}
SELF_CHECK_ATOL = 1e-5


def wait_for_queued_updates(algo: Algorithm, timeout_s: float = 60.0) -> bool:
    """Block until a local learner has applied every batch already queued for it; True when drained.

    IMPALA / APPO learners update on a thread of their own: `algo.train()` can return with a batch
    still in the learner thread's queue, and its update then lands after the export read the weights
    (the exported policy then differs from the learner's by one update, by ~2e-5 here). RLlib 2.60 has
    no public call for this; the queue (`_learner_thread_in_queue`, a `queue.Queue` whose thread calls
    `task_done` after each update) is read where it exists, and nothing is done for other learners
    or remote ones."""
    learner = getattr(algo.learner_group, "_learner", None)
    pending = getattr(learner, "_learner_thread_in_queue", None)
    if pending is None or not hasattr(pending, "unfinished_tasks"):
        return True
    deadline = time.monotonic() + timeout_s
    while pending.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    return not pending.unfinished_tasks


def _learner_module_state(algo: Algorithm, module_id: str) -> dict[str, Any]:
    if not wait_for_queued_updates(algo):
        raise RuntimeError(
            "the learner thread did not finish its queued updates within 60 s; nothing exported"
        )
    path = f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{module_id}"
    state = algo.learner_group.get_state(components=path, inference_only=True)
    return state[COMPONENT_LEARNER][COMPONENT_RL_MODULE][module_id]


def actor_from_algo(algo: Algorithm, module_id: str = DEFAULT_MODULE_ID) -> Actor:
    """A standalone `Actor` holding the learner's current actor weights."""
    if not isinstance(algo.config, ACODMConfig):
        raise ValueError(
            f"export_actor supports acodm only (the softmax actor); got a {type(algo).__name__} "
            "algorithm. Use policies.export.export_policy, which exports PPO, APPO and SAC as "
            "policy kind 'mlp'."
        )
    module_state = _learner_module_state(algo, module_id)
    actor_state = {
        k[len(ACTOR_PREFIX) :]: torch.as_tensor(np.asarray(v))
        for k, v in module_state.items()
        if k.startswith(ACTOR_PREFIX)
    }
    if not actor_state:
        raise ValueError(f"no actor weights found in the state of module {module_id!r}")
    first = actor_state["trunk.0.weight"]
    head = actor_state["head.weight"]
    layers = sum(1 for k in actor_state if k.startswith("trunk.") and k.endswith(".weight")) // 2
    actor = Actor(
        int(first.shape[1]),
        int(head.shape[0]),
        int(first.shape[0]),
        layers,
        floor_per_domain(algo.config.agent, int(head.shape[0])),
    )
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
    """Write the trained AC-ODM actor with `acodm_ray.agent.policy_file.save_policy` (kind
    "actor"); returns the dir. Refuses other algorithms (see `export_policy`)."""
    actor = actor_from_algo(algo, module_id)
    return save_policy(out_dir, actor, domains, state_spec, config)


# ----------------------------------------------------------------------------- PPO / APPO / SAC


def _actor_torch_layers(rl_module) -> list[nn.Module]:
    """The actor's layers in order (encoder MLP, then pi head MLP) of RLlib's default modules."""
    if isinstance(rl_module, DefaultPPOTorchRLModule):  # PPO and APPO
        encoder = rl_module.encoder
        if not isinstance(encoder, TorchActorCriticEncoder):
            raise ValueError(
                f"only stateless MLP encoders can be exported, got {type(encoder).__name__}"
            )
        base = encoder.encoder if encoder.config.shared else encoder.actor_encoder
    elif isinstance(rl_module, DefaultSACTorchRLModule):
        base = rl_module.pi_encoder
    else:
        raise ValueError(
            f"cannot export RLModule {type(rl_module).__name__}: only RLlib's default PPO/APPO/SAC "
            "torch modules with an MLP model are supported"
        )
    if not isinstance(base, TorchMLPEncoder):
        raise ValueError(
            f"only MLP encoders can be exported, got {type(base).__name__} (LSTM/CNN models are not)"
        )
    head = rl_module.pi
    if not isinstance(head, (TorchMLPHead, TorchFreeLogStdMLPHead)):
        raise ValueError(f"only MLP policy heads can be exported, got {type(head).__name__}")
    return list(base.net.mlp) + list(head.net.mlp)


def _layer_dicts(layers: list[nn.Module]) -> tuple[list[dict[str, Any]], list[nn.Module]]:
    """RLlib's MLP layers as `network_fields` reads them, and the layers that hold tensors."""
    dicts: list[dict[str, Any]] = []
    kept: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            dicts.append(
                {
                    "type": "linear",
                    "in_features": layer.in_features,
                    "out_features": layer.out_features,
                    "bias": layer.bias is not None,
                }
            )
            kept.append(layer)
        elif isinstance(layer, nn.LayerNorm) and len(layer.normalized_shape) == 1:
            dicts.append(
                {
                    "type": "layernorm",
                    "normalized_shape": int(layer.normalized_shape[0]),
                    "eps": layer.eps,
                    "elementwise_affine": layer.elementwise_affine and layer.bias is not None,
                }
            )
            kept.append(layer)
        elif type(layer) in _ACTIVATION_NAMES:
            dicts.append(
                {
                    "type": "activation",
                    "name": _ACTIVATION_NAMES[type(layer)],
                    "alpha": float(getattr(layer, "alpha", 1.0)),
                }
            )
        elif not isinstance(layer, nn.Identity):
            raise ValueError(
                f"cannot export layer {layer!r}: supported are Linear, LayerNorm and "
                f"{sorted(_ACTIVATION_NAMES.values())} activations"
            )
    return dicts, kept


def _env_mapping(algo: Algorithm) -> tuple[str, float]:
    """The env's action mapping and epsilon (DataMixingEnv's env_config, or a look-alike's)."""
    env_config = dict(algo.config.env_config or {})
    mapping = env_config.get("action_mapping", "simplex")
    if mapping not in ACTION_MAPPINGS:
        raise ValueError(
            f"unknown action mapping {mapping!r} in env_config; choose one of {list(ACTION_MAPPINGS)}"
        )
    if "experiment" in env_config:
        eps = experiment_from(env_config["experiment"]).env.action_epsilon
    else:
        eps = env_config.get("action_epsilon", EnvConfig().action_epsilon)
    return mapping, float(eps)


def _action_fields(
    algo: Algorithm, rl_module, num_domains: int, sac_action: str
) -> tuple[dict, dict]:
    """`MLPSpec`'s fields from ACTION_DIST_INPUTS to weights, and their provenance."""
    space = rl_module.action_space
    if not isinstance(space, gym.spaces.Box) or space.shape != (num_domains,):
        raise ValueError(f"expected a Box action space of shape ({num_domains},), got {space}")
    dist_cls = rl_module.get_inference_action_dist_cls()
    if dist_cls is TorchDiagGaussian:
        deterministic = "loc"
    elif dist_cls is TorchSquashedGaussian:
        if sac_action not in SAC_ACTIONS:
            raise ValueError(f"sac_action must be one of {list(SAC_ACTIONS)}, got {sac_action!r}")
        deterministic = sac_action
    else:
        raise ValueError(
            f"cannot export the action distribution {getattr(dist_cls, '__name__', dist_cls)}: "
            "supported are TorchDiagGaussian (PPO, APPO) and TorchSquashedGaussian (SAC)"
        )
    low = [float(x) for x in np.asarray(space.low, dtype=np.float32)]
    high = [float(x) for x in np.asarray(space.high, dtype=np.float32)]
    bounds = "none"
    if algo.config.normalize_actions:
        # unsquash_action only maps bounded float Boxes
        if (
            np.all(space.bounded_below)
            and np.all(space.bounded_above)
            and space.dtype in (np.float32, np.float64)
        ):
            bounds = "unsquash"
    elif algo.config.clip_actions:
        bounds = "clip"
    mapping, eps = _env_mapping(algo)
    fields = {
        "squash": deterministic == "squashed",
        "bounds": bounds,
        "action_low": low if bounds != "none" else None,
        "action_high": high if bounds != "none" else None,
        "action_mapping": mapping,
        "action_epsilon": eps,
    }
    source = {
        "algo": type(algo).__name__,
        "rl_module": type(rl_module).__name__,
        "distribution": dist_cls.__name__,
        "deterministic": deterministic,
        "normalize_actions": bool(algo.config.normalize_actions),
        "clip_actions": bool(algo.config.clip_actions),
        "action_space": {"low": low, "high": high},
        "action_mapping": mapping,
        "action_epsilon": eps,
    }
    return fields, source


def mlp_policy_from_algo(
    algo: Algorithm,
    module_id: str = DEFAULT_MODULE_ID,
    sac_action: str = "squashed",
) -> tuple[MLPPolicy, dict[str, Any]]:
    """An `MLPPolicy` holding the learner's current PPO/APPO/SAC actor and its action math, and
    the provenance to store with it. Checked against RLlib's forward_inference."""
    if isinstance(algo.config, ACODMConfig) or not isinstance(algo.config, MLP_CONFIGS):
        raise ValueError(
            f"mlp export supports PPO, APPO and SAC; got a {type(algo).__name__} algorithm"
        )
    rl_module = copy.deepcopy(
        algo.get_module(module_id)
    )  # the structure (never touch the live copy)
    if rl_module is None:
        raise ValueError(f"the algorithm has no module {module_id!r}")
    rl_module.set_state(_learner_module_state(algo, module_id))  # the learner's weights
    rl_module.eval()
    obs_space = rl_module.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        raise ValueError(f"expected a 1-D Box observation space, got {obs_space}")
    state_dim = int(obs_space.shape[0])
    num_domains = int(np.prod(rl_module.action_space.shape))
    layers, kept = _layer_dicts(_actor_torch_layers(rl_module))
    action, source = _action_fields(algo, rl_module, num_domains, sac_action)
    policy = MLPPolicy(state_dim, num_domains, MLPSpec(**network_fields(layers), **action))
    targets = [layer for layer in policy.net if isinstance(layer, (nn.Linear, nn.LayerNorm))]
    with torch.no_grad():
        for src, dst in zip(kept, targets, strict=True):
            for name, tensor in src.state_dict().items():
                getattr(dst, name).copy_(tensor)
    policy.eval()
    # self-check: the rebuilt network gives RLlib's own action distribution inputs (the loc part)
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(8, state_dim, generator=gen) * 2.0
    with torch.no_grad():
        expected = rl_module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS][
            :, :num_domains
        ]
        got = policy.action_inputs(obs)[:, :num_domains]
    if not torch.allclose(got, expected.to(got.dtype), atol=SELF_CHECK_ATOL, rtol=0):
        raise RuntimeError(
            f"exported {type(rl_module).__name__} does not reproduce RLlib's forward_inference "
            f"(max abs difference {float((got - expected).abs().max()):.3g})"
        )
    return policy, source


def export_policy(
    algo: Algorithm,
    out_dir: str | Path,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
    module_id: str = DEFAULT_MODULE_ID,
    sac_action: str = "squashed",
) -> Path:
    """Export any supported algorithm's policy (safetensors + JSON); returns the dir.

    AC-ODM -> kind "actor" (`export_actor`); PPO / APPO / SAC -> kind "mlp" (see the module
    docstring; `sac_action` chooses SAC's deterministic action: "squashed" or "loc")."""
    if isinstance(algo.config, ACODMConfig):
        return export_actor(algo, out_dir, domains, state_spec, config, module_id)
    if not isinstance(algo.config, MLP_CONFIGS):
        raise ValueError(
            f"cannot export a {type(algo).__name__} policy: supported are AC-ODM (kind 'actor') and "
            "PPO, APPO, SAC (kind 'mlp')"
        )
    policy, source = mlp_policy_from_algo(algo, module_id, sac_action)
    dim = state_spec.get("dim") if isinstance(state_spec, dict) else None
    if dim is not None and int(dim) != policy.state_dim:
        raise ValueError(
            f"state_spec says the state has {dim} entries, the policy reads {policy.state_dim}"
        )
    return save_mlp_policy(out_dir, policy, domains, state_spec, config, source=source)
