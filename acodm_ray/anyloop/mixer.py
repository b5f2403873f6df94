"""Which mixer an ordinary training loop is driven by: a name, an exported policy, or a `Mixer`.

The same `MixerSpec` -> mixer path as the Ray policy server (`acodm_ray.policy_server`), so a
name means the same mixer in both places and an exported policy is refused for the same reasons
(other domains, another state layout or size, another progress scale), with both lists named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from acodm_ray.agent.config import AgentConfig
from acodm_ray.config import MixerConfig
from acodm_ray.mixers import MIXERS, SCORE_MIXERS
from acodm_ray.mixers.base import Mixer
from acodm_ray.policy_server import build_server_mixer, mixer_spec

ONLINE = "acodm-online"  # non-proxy AC-ODM: the agent learns while this loop trains
LOOP_MIXERS = (*MIXERS, ONLINE)


def build_loop_mixer(
    mixer: str | Mixer | None,
    policy: str | Path | None,
    domains: Sequence[str],
    natural: np.ndarray,
    state_spec: dict,
    total_steps: int,
    mixer_config: MixerConfig | None = None,
    agent: AgentConfig | None = None,
    seed: int = 0,
) -> Mixer:
    """`mixer` (a name of `LOOP_MIXERS` or a ready `Mixer`), or the exported policy in `policy`."""
    if isinstance(mixer, Mixer):
        if policy is not None:
            raise ValueError("pass a mixer or a policy, not both")
        if list(mixer.domains) != list(domains):
            raise ValueError(
                f"the mixer is for domains {list(mixer.domains)}, the dataset has {list(domains)}"
            )
        return mixer
    cfg = mixer_config or MixerConfig()
    if policy is not None and mixer is not None:
        raise ValueError(f"pass mixer={mixer!r} or policy={str(policy)!r}, not both")
    if mixer is not None:
        cfg = dataclasses.replace(cfg, name=str(mixer))
    if policy is None and cfg.name not in LOOP_MIXERS:
        raise ValueError(
            f"unknown mixer {cfg.name!r}; choose one of {list(LOOP_MIXERS)} or pass policy="
        )
    online = policy is None and cfg.name == ONLINE
    return build_server_mixer(
        mixer_spec(
            domains,
            natural,
            state_spec["dim"],
            cfg,
            total_steps,
            seed,
            state_spec["progress_scale"],
            state_spec,
            policy=policy,
            agent=(agent or AgentConfig()) if online else None,
        )
    )


def needs_scores(mixer: Mixer) -> bool:
    """Whether the mixer learns from the gradient-alignment scores (the loop must then compute the
    per-domain gradients): the alignment mixer and the online AC-ODM agent (its reward)."""
    return mixer.name in SCORE_MIXERS or mixer.name == ONLINE
