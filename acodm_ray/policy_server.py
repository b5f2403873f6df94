"""PolicyServer: the mixer of a target run, served as a named Ray actor.

The server holds one `Mixer` -- an exported policy of any kind (proxy mode, `ActorMixer`: the
AC-ODM actor, an RLlib PPO/APPO/SAC policy or a replayed weight schedule), a static or
ODM mixer (`build_mixer`), or the online AC-ODM agent (non-proxy mode, `OnlineACODM`) -- and
answers `weights(state)`, `update(signals)`, `state_dict()` / `load_state_dict()` (the mixer's
state goes into every Ray Train checkpoint) and `describe()`.

It is created with `num_cpus=0`, so it never takes a core from the Train workers, pinned to the
driver's node (an exported policy path given on the driver's machine is readable there, and on a
cluster that node is the head, which an autoscaler never removes), in a fixed namespace with a
configurable name, optionally `lifetime="detached"`. The pin is hard: with a soft one Ray placed the
server on a worker node whenever one existed next to a head that advertises `CPU: 0` (all deploy
targets), and an autoscaler removes such a node as idle once no Train worker runs there, killing
the server mid-run (tests/test_autoscaling.py).

A policy whose domains or state size differ from the run's is refused (`check_policy_matches`),
on the driver before the actor starts and again inside the actor.

`PolicyClient` (acodm_ray/policy_client.py) is what rank 0 of the Train workers uses: if the server
is unreachable, training keeps the LAST weights and never switches to another mixer.

This module imports Ray core only, never RLlib.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import load_policy
from acodm_ray.config import MixerConfig
from acodm_ray.errors import AcodmError
from acodm_ray.mixers import build_mixer
from acodm_ray.mixers.actor import ActorMixer, PolicyMismatchError, check_policy_matches
from acodm_ray.mixers.base import Mixer
from acodm_ray.mixers.online_acodm import OnlineACODM
from acodm_ray.mixers.static import StaticMixer
from acodm_ray.step_signals import StepSignals

log = logging.getLogger(__name__)

DEFAULT_NAME = "acodm-policy-server"
DEFAULT_NAMESPACE = "acodm"
KINDS = ("policy", "mixer", "online")


class PolicyServerError(AcodmError, RuntimeError):
    """The policy server could not be started, or another server holds its name."""


class PolicyServerUnavailable(AcodmError, RuntimeError):
    """The policy server cannot be reached and there are no earlier weights to fall back to."""


@dataclass
class MixerSpec:
    """Everything needed to build (and rebuild, on `reset`) the served mixer."""

    kind: str  # "policy" (exported policy, any policy_file kind) | "mixer" (cfg.mixer: uniform/natural/file/odm) | "online"
    domains: list[str]
    natural: list[float]
    state_dim: int
    mixer: dict[str, Any] = field(default_factory=dict)  # MixerConfig as a dict
    policy_dir: str | None = None
    agent: dict[str, Any] = field(default_factory=dict)  # AgentConfig as a dict (online)
    total_steps: int = 1
    seed: int = 0
    progress_scale: float | None = (
        None  # signals.progress_scale of the run (checked against a policy's)
    )
    state_spec: dict[str, Any] | None = (
        None  # the run's state spec: refusals then name both state layouts
    )

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown mixer kind {self.kind!r}; choose one of {list(KINDS)}")
        if self.kind == "policy" and not self.policy_dir:
            raise ValueError("mixer kind 'policy' needs policy_dir")

    def identity(self) -> dict[str, Any]:
        """What makes two servers interchangeable (a named server is reused only if this matches)."""
        ident = {"kind": self.kind, "domains": list(self.domains), "state_dim": int(self.state_dim)}
        if self.kind == "policy":
            ident["policy_dir"] = str(Path(self.policy_dir).resolve())
        elif self.kind == "mixer":
            ident["mixer"] = dict(self.mixer)
        else:
            ident["agent"] = dict(self.agent)
            ident["mixer"] = dict(self.mixer)
            ident["total_steps"] = int(self.total_steps)
        return ident


def mixer_spec(
    domains: Sequence[str],
    natural: Sequence[float],
    state_dim: int,
    mixer: MixerConfig,
    total_steps: int,
    seed: int,
    progress_scale: float | None,
    state_spec: dict[str, Any] | None = None,
    policy: str | Path | None = None,
    agent: AgentConfig | None = None,
) -> MixerSpec:
    """Which mixer a run is driven by: an exported `policy` > the online agent (`agent` given) >
    `mixer`. Used by the Ray Train target and by ordinary training loops (acodm_ray.anyloop)."""
    common = dict(
        domains=list(domains),
        natural=[float(x) for x in natural],
        state_dim=int(state_dim),
        mixer=asdict(mixer),
        total_steps=int(total_steps),
        seed=int(seed),
        progress_scale=progress_scale,
        state_spec=state_spec,
    )
    if policy is not None:
        return MixerSpec(kind="policy", policy_dir=str(policy), **common)
    if agent is not None:
        return MixerSpec(kind="online", agent=asdict(agent), **common)
    return MixerSpec(kind="mixer", **common)


def check_spec(spec: MixerSpec) -> dict[str, Any] | None:
    """Refuse a policy that does not fit the run (cheap: reads the policy's JSON and weights).
    Returns the policy metadata for kind "policy"."""
    if spec.kind != "policy":
        return None
    _, meta = load_policy(spec.policy_dir)
    check_policy_matches(meta, spec.domains, spec.state_dim, spec.progress_scale, spec.state_spec)
    return meta


def build_server_mixer(spec: MixerSpec) -> Mixer:
    """The mixer a `MixerSpec` describes."""
    natural = np.asarray(spec.natural, dtype=np.float64)
    if spec.kind == "policy":
        return ActorMixer(
            spec.policy_dir, spec.domains, spec.state_dim, spec.progress_scale, spec.state_spec
        )
    if spec.kind == "mixer":
        return build_mixer(MixerConfig(**spec.mixer), spec.domains, natural)

    mixer_cfg = MixerConfig(**spec.mixer)
    return OnlineACODM(
        spec.domains,
        natural,
        spec.state_dim,
        AgentConfig(**spec.agent),
        spec.total_steps,
        odm_variant=mixer_cfg.odm_variant,
        odm_alpha=mixer_cfg.odm_alpha,
        seed=spec.seed,
    )


def max_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024


def mixer_learns(mixer: Mixer) -> bool:
    """Whether `update` does anything (static mixers and a frozen actor ignore signals)."""
    return type(mixer).update is not Mixer.update


# ---------------------------------------------------------------------- signals over the wire


_ARRAY_FIELDS = ("losses", "counts", "scores", "raw_scores", "state", "weights", "effective")
_SCALAR_FIELDS = ("step", "loss", "lr", "grad_norm", "tokens", "seconds", "finite")


def signals_to_dict(signals: StepSignals) -> dict[str, Any]:
    """A plain dict of a step's signals (what rank 0 sends to the server)."""
    out: dict[str, Any] = {k: np.asarray(getattr(signals, k)).tolist() for k in _ARRAY_FIELDS}
    out.update({k: getattr(signals, k) for k in _SCALAR_FIELDS})
    return out


def signals_from_dict(data: dict[str, Any]) -> StepSignals:
    kwargs: dict[str, Any] = {k: np.asarray(data[k], dtype=np.float64) for k in _ARRAY_FIELDS}
    kwargs["state"] = kwargs["state"].astype(np.float32)
    kwargs.update({k: data[k] for k in _SCALAR_FIELDS})
    return StepSignals(**kwargs)


# ---------------------------------------------------------------------- the server


class PolicyServer:
    """The actor class (plain Python, so it is also usable and testable in-process)."""

    def __init__(self, spec: dict[str, Any] | MixerSpec) -> None:
        self.spec = spec if isinstance(spec, MixerSpec) else MixerSpec(**spec)
        check_spec(self.spec)
        self.mixer = build_server_mixer(self.spec)
        self.learns = mixer_learns(self.mixer)
        self.num_weights_calls = 0
        self.num_updates = 0

    def weights(self, state: Sequence[float] | np.ndarray | None = None) -> list[float]:
        self.num_weights_calls += 1
        if state is not None and len(state) != self.spec.state_dim:
            raise PolicyMismatchError(
                f"state of dimension {len(state)} sent to a server for state dimension {self.spec.state_dim}"
            )
        state_arr = None if state is None else np.asarray(state, dtype=np.float32)
        return [float(x) for x in self.mixer.weights(state_arr)]

    def update(self, signals: dict[str, Any]) -> None:
        self.num_updates += 1
        if self.learns:
            self.mixer.update(signals_from_dict(signals))

    def state_dict(self) -> dict[str, Any]:
        return {
            "mixer": self.mixer.name,
            "state": self.mixer.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mixer") != self.mixer.name:
            raise PolicyServerError(
                f"mixer state is for {state.get('mixer')!r} but this server holds {self.mixer.name!r}: "
                "resume a run with the mixer it was started with"
            )
        self.mixer.load_state_dict(state["state"])
        self.num_updates = int(state.get("num_updates", 0))

    def reset(self) -> None:
        """Back to the mixer's initial state (a fresh run on a reused server)."""
        self.mixer = build_server_mixer(self.spec)
        self.num_weights_calls = 0
        self.num_updates = 0

    def describe(self) -> dict[str, Any]:
        out = {
            "mixer": self.mixer.name,
            "kind": self.spec.kind,
            "domains": list(self.spec.domains),
            "state_dim": int(self.spec.state_dim),
            "learns": self.learns,
            "static": isinstance(self.mixer, StaticMixer),
            "max_rss_mb": max_rss_mb(),
            "identity": self.spec.identity(),
            "num_weights_calls": self.num_weights_calls,
            "num_updates": self.num_updates,
        }
        if self.spec.kind == "policy":
            out["policy_dir"] = self.spec.policy_dir
            out["policy_kind"] = getattr(self.mixer, "kind", None)
        return out

    def actor_state(self) -> dict[str, Any] | None:
        """The current AC-ODM actor (online agent or exported "actor"-kind policy): weights and
        sizes, for export. None for other mixers and for "mlp"/"trajectory" policies (those have no
        hidden/layers; their policy directory is the export)."""
        actor = getattr(self.mixer, "actor", None)
        if not isinstance(actor, Actor):
            return None
        return {
            "state_dict": {k: v.detach().clone() for k, v in actor.state_dict().items()},
            "state_dim": actor.state_dim,
            "num_domains": actor.num_domains,
            "hidden": actor.hidden,
            "layers": actor.layers,
        }

    def ping(self) -> bool:
        return True


def _remote_class():
    # lazy: acodm_ray.anyloop builds its mixers here and runs without Ray
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(PolicyServer)


def start_policy_server(
    spec: MixerSpec,
    name: str = DEFAULT_NAME,
    namespace: str = DEFAULT_NAMESPACE,
    detached: bool = False,
    timeout_s: float = 120.0,
):
    """Start the named server (or reuse a live one with the same mixer, reset to its initial
    state); returns (handle, created). Refuses a name held by a server of another mixer."""
    # lazy: acodm_ray.anyloop builds its mixers here and runs without Ray
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check_spec(spec)  # a mismatched policy fails here, on the driver, with a clear message
    try:
        existing = ray.get_actor(name, namespace=namespace)
    except ValueError:
        existing = None
    if existing is not None:
        try:
            desc = ray.get(existing.describe.remote(), timeout=timeout_s)
        except Exception as err:  # dead or hung: it cannot be reused, and it holds the name
            raise PolicyServerError(
                f"a policy server named {name!r} (namespace {namespace!r}) exists but does not answer "
                f"({type(err).__name__}); kill it (ray.kill(ray.get_actor({name!r}, namespace={namespace!r}))) "
                "or set target.server_name"
            ) from err
        if desc["identity"] != spec.identity():
            raise PolicyServerError(
                f"a policy server named {name!r} (namespace {namespace!r}) already serves another mixer "
                f"({desc['identity']}); stop it or set target.server_name to another name"
            )
        ray.get(existing.reset.remote(), timeout=timeout_s)
        log.info("reusing policy server %r (%s)", name, desc["mixer"])
        return existing, False
    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        ),
    }
    if detached:
        options["lifetime"] = "detached"
    handle = _remote_class().options(**options).remote(asdict(spec))
    try:
        ray.get(handle.ping.remote(), timeout=timeout_s)
    except Exception as err:
        cause = getattr(err, "cause", None) or err
        try:
            ray.kill(handle)
        except Exception:
            pass
        if isinstance(cause, PolicyMismatchError):
            raise cause from None
        raise PolicyServerError(f"policy server {name!r} failed to start: {err}") from err
    return handle, True


def stop_policy_server(
    handle, name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE, timeout_s: float = 10.0
) -> None:
    """Kill the server and wait until its name is free again (so a next run can take it)."""
    # lazy: acodm_ray.anyloop builds its mixers here and runs without Ray
    import ray

    try:
        ray.kill(handle, no_restart=True)
    except Exception:
        return
    deadline = time.monotonic() + timeout_s
    while get_policy_server(name, namespace) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def get_policy_server(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE):
    """The handle of a running server, or None."""
    # lazy: acodm_ray.anyloop builds its mixers here and runs without Ray
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_NAMESPACE",
    "MixerSpec",
    "PolicyServer",
    "PolicyServerError",
    "PolicyServerUnavailable",
    "PolicyMismatchError",
    "build_server_mixer",
    "check_spec",
    "start_policy_server",
    "stop_policy_server",
    "get_policy_server",
    "signals_to_dict",
    "signals_from_dict",
]
