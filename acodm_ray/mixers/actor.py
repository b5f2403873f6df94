"""ActorMixer: a frozen exported policy chooses the weights from the training state.

This is proxy mode's transfer step (docs/method.md): the policy learned on a small proxy reads the
target's own state. The policy file names the domains and the state layout it was trained with;
a corpus with other domains, another domain order or another state size is refused, because the
actor's inputs and outputs would silently mean something else.

Every policy kind of `acodm_ray.agent.policy_file` is served: the AC-ODM actor ("actor"), an
RLlib PPO/APPO/SAC policy ("mlp") and a weight schedule replayed by progress ("trajectory"). A
trajectory reads only the state's last entry (the progress), so it is not tied to a state size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acodm_ray.agent.policy_file import load_policy, policy_kind
from acodm_ray.errors import AcodmError
from acodm_ray.mixers.base import Mixer

# kinds whose network reads the whole state (a trajectory reads only the progress entry)
STATE_SIZED_KINDS = ("actor", "mlp")
# the mixer's name per policy kind ("acodm" for the AC-ODM actor, as before kinds existed)
MIXER_NAMES = {"actor": "acodm", "mlp": "policy-mlp", "trajectory": "policy-trajectory"}


class PolicyMismatchError(AcodmError, ValueError):
    """A policy trained for other domains or another state layout than the run's."""


def policy_progress_scale(meta: dict[str, Any]) -> float | None:
    """The scale the policy read training progress with (state[-1] = progress x scale)."""
    scale = meta.get("progress_scale", (meta.get("state_spec") or {}).get("progress_scale"))
    return None if scale is None else float(scale)


def check_policy_matches(
    meta: dict[str, Any],
    domains: Sequence[str],
    state_dim: int | None,
    progress_scale: float | None = None,
    state_spec: dict[str, Any] | None = None,
) -> None:
    """Refuse a policy whose domains, state layout, state size or progress scale differ from the
    run's. `state_spec` (the run's, as `signals.make_state_spec`) lets the messages name both lists
    of state groups and of tracked matrices."""
    policy_spec = meta.get("state_spec") or {}
    policy_domains = list(meta["domains"])
    if policy_domains != list(domains):
        if sorted(policy_domains) == sorted(domains):
            raise PolicyMismatchError(
                f"policy domains are in another order: policy {policy_domains}, corpus {list(domains)}"
            )
        raise PolicyMismatchError(
            f"policy was trained on domains {policy_domains}, the corpus has {list(domains)} "
            f"(missing from corpus: {sorted(set(policy_domains) - set(domains))}, "
            f"not in policy: {sorted(set(domains) - set(policy_domains))})"
        )
    sized = policy_kind(meta) in STATE_SIZED_KINDS
    run_spec = state_spec or {}
    if (
        sized
        and policy_spec.get("layout")
        and run_spec.get("layout")
        and list(policy_spec["layout"]) != list(run_spec["layout"])
    ):
        raise PolicyMismatchError(
            f"policy reads a state laid out as {list(policy_spec['layout'])}, this run's state is "
            f"{list(run_spec['layout'])}"
        )
    if state_dim is not None and sized and int(meta["state_dim"]) != state_dim:
        tracked = ""
        if "tracked_params" in policy_spec and "tracked_params" in run_spec:
            tracked = (
                f"; the policy's state tracks {list(policy_spec['tracked_params'])}, this run's tracks "
                f"{list(run_spec['tracked_params'])} (fix signals.state_layers to the policy's "
                f"{len(policy_spec['tracked_params'])})"
            )
        raise PolicyMismatchError(
            f"policy expects a state of dimension {meta['state_dim']}, this run's state has {state_dim} "
            f"(state = 3K + 2L + 1 with L tracked weight matrices: the target tracks another number of layers)"
            + tracked
        )
    policy_scale = policy_progress_scale(meta)
    if (
        progress_scale is not None
        and policy_scale is not None
        and policy_scale != float(progress_scale)
    ):
        raise PolicyMismatchError(
            f"policy reads training progress as (t / T) x {policy_scale:g}, this run's state has x "
            f"{float(progress_scale):g} (signals.progress_scale): set it to {policy_scale:g} for this policy"
        )


class ActorMixer(Mixer):
    name = "acodm"

    def __init__(
        self,
        policy_dir: str | Path,
        domains: Sequence[str],
        state_dim: int | None = None,
        progress_scale: float | None = None,
        state_spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(domains)
        self.actor, self.meta = load_policy(policy_dir)  # any kind: an nn.Module state -> weights
        check_policy_matches(self.meta, self.domains, state_dim, progress_scale, state_spec)
        self.kind = policy_kind(self.meta)
        self.name = MIXER_NAMES[self.kind]
        self.policy_dir = str(policy_dir)

    @torch.no_grad()
    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        if state is None:
            state = np.zeros(int(self.meta["state_dim"]), dtype=np.float32)
        obs = torch.as_tensor(np.asarray(state, dtype=np.float32)).reshape(1, -1)
        w = self.actor(obs)[0].double().numpy()
        return w / w.sum()
