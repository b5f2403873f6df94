"""Exported mixing policies: `actor.safetensors` + `policy.json`, loadable without RLlib.

Only safetensors (plain tensors) and JSON are ever read: a pickle or a torch `.pt` file can run
arbitrary code when loaded, so anything else passed as a policy is refused before it is opened
by a deserializer.

policy.json holds "kind" (absent = "actor", files written before kinds existed), and
`load_policy` returns (module, meta) for every kind, the module mapping states [B, state_dim]
to domain weights on the simplex [B, K]:

- "actor": the AC-ODM softmax `Actor` (meta "hidden", "layers"); `save_policy`.
- "mlp": an RLlib PPO / APPO / SAC policy's deterministic action, rebuilt as `MLPPolicy` from the
  fields of `MLPSpec` (meta "widths", "activations", "layer_norm", "squash", "bounds",
  "action_low", "action_high", "action_mapping", "action_epsilon"); `save_mlp_policy` (written by
  `policies.export.export_policy`). format_version 1 described the same policies by a layer list
  and an op list ("network", "action_steps"); such files still load, translated by `v1_mlp_fields`.
- "trajectory": a [T, K] weight schedule replayed by training progress, `TrajectoryPolicy`
  (meta "num_steps", "progress_scale"); `save_trajectory_policy`.

Every kind also has "format", "format_version", "domains", "state_dim", "num_domains",
"state_spec" and "config".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from acodm_ray.actions import ACTION_MAPPINGS
from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_nets import (
    MLP_FIELDS,
    SQUASH_HIGH,
    SQUASH_LOW,
    MLPPolicy,
    MLPSpec,
    TrajectoryPolicy,
    network_fields,
)
from acodm_ray.errors import AcodmError
from acodm_ray.sampler import WeightsError, check_weights

WEIGHTS_FILE = "actor.safetensors"
META_FILE = "policy.json"
FORMAT_NAME = "acodm-policy"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: "mlp" policies as a layer list and an op list
KINDS = ("actor", "mlp", "trajectory")
DEFAULT_KIND = "actor"  # files without a "kind" key (written before kinds existed)
# keys every kind needs, then each kind's own
COMMON_KEYS = ("domains", "state_dim", "num_domains")
KIND_KEYS = {
    "actor": ("hidden", "layers"),
    "mlp": MLP_FIELDS,
    "trajectory": ("num_steps", "progress_scale"),
}


class PolicyFileError(AcodmError, ValueError):
    """A policy directory is missing, incomplete, or not in the safetensors + JSON format."""


def policy_kind(meta: dict[str, Any]) -> str:
    """The kind of a policy from its metadata ("actor" when the file predates kinds)."""
    return meta.get("kind", DEFAULT_KIND)


def _write(out_dir: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    # One metadata key: safetensors writes its metadata from an unordered map, so two keys come out
    # in either order and the same weights would not give the same bytes. The kind is in policy.json.
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out


def _base_meta(
    kind: str,
    domains: list[str],
    state_dim: int,
    state_spec: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "domains": domains,
        "state_dim": int(state_dim),
        "num_domains": len(domains),
        "state_spec": state_spec,
        "config": config,
    }


def _check_domains(domains: list[str], num_outputs: int, what: str) -> list[str]:
    domains = [str(d) for d in domains]
    if len(domains) != num_outputs:
        raise PolicyFileError(
            f"{len(domains)} domain names given for {what} with {num_outputs} outputs"
        )
    if len(set(domains)) != len(domains):
        raise PolicyFileError(f"duplicate domain names in {domains}")
    return domains


def save_policy(
    out_dir: str | Path,
    actor: Actor,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
) -> Path:
    """Write the actor's weights and what is needed to rebuild and feed it; returns the dir."""
    domains = _check_domains(domains, actor.num_domains, "an actor")
    meta = _base_meta("actor", domains, actor.state_dim, state_spec, config)
    meta.update(hidden=actor.hidden, layers=actor.layers, floor=actor.floor)
    return _write(out_dir, actor.state_dict(), meta)


def save_mlp_policy(
    out_dir: str | Path,
    policy: MLPPolicy,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
    source: dict[str, Any] | None = None,
) -> Path:
    """Write an `MLPPolicy` (kind "mlp"): its Linear/LayerNorm tensors as safetensors, its
    `MLPSpec` fields as data. `source` (e.g. the RLlib algorithm and distribution it was
    exported from) is stored as provenance under meta "source"; the loader does not use it."""
    domains = _check_domains(domains, policy.num_domains, "an MLP policy")
    meta = _base_meta("mlp", domains, policy.state_dim, state_spec, config)
    meta.update(policy.spec.to_meta(), source=dict(source or {}))
    return _write(out_dir, policy.state_dict(), meta)


def _check_trajectory_rows(weights: np.ndarray, domains: list[str]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < 1:
        raise PolicyFileError(
            f"a trajectory needs weights of shape [T >= 1, K], got shape {tuple(w.shape)}"
        )
    if w.shape[1] != len(domains):
        raise PolicyFileError(
            f"trajectory rows have {w.shape[1]} weights but there are {len(domains)} domains"
        )
    rows = []
    for t, row in enumerate(w):
        try:
            rows.append(check_weights(row, domains))
        except WeightsError as err:
            raise PolicyFileError(
                f"trajectory row {t} (optimizer step {t}) is not a distribution: {err}"
            ) from err
    return np.stack(rows)


def _progress_scale(state_spec: dict[str, Any]) -> float:
    scale = state_spec.get("progress_scale") if isinstance(state_spec, dict) else None
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not np.isfinite(scale)
        or scale <= 0
    ):
        raise PolicyFileError(f"state_spec needs a positive 'progress_scale', got {scale!r}")
    return float(scale)


def save_trajectory_policy(
    out_dir: str | Path,
    weights: np.ndarray,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
) -> Path:
    """Write a weight schedule (kind "trajectory"): `weights` [T, K], row t = the weights used at
    optimizer step t (0-based) of a T-step run. A target replays it by its own training progress
    (the state's last entry / state_spec["progress_scale"]); see `TrajectoryPolicy`.
    `state_spec` is as `LMTrainer.state_spec` (needs "dim" and "progress_scale")."""
    domains = [str(d) for d in domains]
    _check_domains(domains, len(domains), "a trajectory")
    rows = _check_trajectory_rows(weights, domains)
    dim = state_spec.get("dim") if isinstance(state_spec, dict) else None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise PolicyFileError(f"state_spec needs a positive integer 'dim', got {dim!r}")
    scale = _progress_scale(state_spec)
    policy = TrajectoryPolicy(torch.from_numpy(rows), scale)
    meta = _base_meta("trajectory", domains, dim, state_spec, config)
    meta.update(num_steps=policy.num_steps, progress_scale=scale)
    return _write(out_dir, policy.state_dict(), meta)


V1_MLP_KEYS = ("network", "action_steps")


def _v1_action(steps: list[dict[str, Any]], num_domains: int) -> dict[str, Any]:
    """squash / bounds / mapping from a version-1 op list, which our exporter always wrote as
    slice(0, K), [squash(-1, 1)], [unsquash | clip], simplex | softmax."""
    fields: dict[str, Any] = {
        "squash": False,
        "bounds": "none",
        "action_low": None,
        "action_high": None,
    }
    ops = list(steps)
    if not ops or ops.pop(0) != {"op": "slice", "start": 0, "stop": num_domains}:
        raise ValueError(
            f"action_steps must start with the loc, slice(0, {num_domains}): {steps!r}"
        )
    if ops and ops[0] == {"op": "squash", "low": SQUASH_LOW, "high": SQUASH_HIGH}:
        ops.pop(0)
        fields["squash"] = True
    if ops and ops[0].get("op") in ("unsquash", "clip"):  # BOUNDS but "none", which has no op
        step = ops.pop(0)
        fields.update(bounds=step["op"], action_low=step["low"], action_high=step["high"])
    last = ops.pop(0) if len(ops) == 1 else {}
    if last.get("op") not in ACTION_MAPPINGS:
        raise ValueError(
            f"action_steps has no equivalent in format_version {FORMAT_VERSION}: {steps!r}"
        )
    fields.update(action_mapping=last["op"], action_epsilon=last.get("eps", 0.0))
    return fields


def v1_mlp_fields(
    network: list[dict[str, Any]], steps: list[dict[str, Any]], num_domains: int
) -> dict[str, Any]:
    """The `MLPSpec` fields of a format_version 1 "mlp" policy (its "network" and "action_steps")."""
    return {**network_fields(network), **_v1_action(steps, num_domains)}


def _refuse_non_directory(path: Path) -> None:
    if not path.exists():
        raise PolicyFileError(f"policy directory not found: {path}")
    if not path.is_dir():
        raise PolicyFileError(
            f"{path} is a file, not a policy directory: a policy is a directory holding "
            f"{WEIGHTS_FILE} and {META_FILE}. Pickle/torch checkpoints (.pkl, .pt, .pth, .ckpt) "
            "are refused because loading them can execute code; export a policy with "
            "policies.export.export_policy or acodm_ray.agent.policy_file.save_policy / "
            "save_mlp_policy / save_trajectory_policy."
        )


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise PolicyFileError(f"policy metadata not found: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PolicyFileError(f"{meta_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise PolicyFileError(
            f"{meta_path} is not an AC-ODM policy file (format != {FORMAT_NAME!r})"
        )
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise PolicyFileError(
            f"{meta_path}: unsupported format_version {meta.get('format_version')!r} "
            f"(this code reads {list(READABLE_VERSIONS)})"
        )
    kind = policy_kind(meta)
    if kind not in KINDS:
        raise PolicyFileError(
            f"{meta_path}: unknown policy kind {kind!r}; valid kinds are {list(KINDS)}"
        )
    version_one_mlp = meta["format_version"] == 1 and kind == "mlp"
    for key in COMMON_KEYS + (V1_MLP_KEYS if version_one_mlp else KIND_KEYS[kind]):
        if key not in meta:
            raise PolicyFileError(f"{meta_path}: missing key {key!r} (policy kind {kind!r})")
    if not isinstance(meta["domains"], list):
        raise PolicyFileError(
            f"{meta_path}: domains must be a list of names, got {meta['domains']!r}"
        )
    if len(meta["domains"]) != meta["num_domains"]:
        raise PolicyFileError(
            f"{meta_path}: {len(meta['domains'])} domains listed but num_domains={meta['num_domains']}"
        )
    for key in ("state_dim", "num_domains"):
        if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 1:
            raise PolicyFileError(
                f"{meta_path}: {key} must be a positive integer, got {meta[key]!r}"
            )
    if version_one_mlp:
        try:
            meta.update(v1_mlp_fields(meta["network"], meta["action_steps"], meta["num_domains"]))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise PolicyFileError(
                f"{meta_path}: invalid 'mlp' policy description (format_version 1): {err}"
            ) from err
    return meta


def _read_tensors(weights_path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise PolicyFileError(f"policy weights not found: {weights_path}")
    try:
        # safetensors parses a JSON header and raw buffers; it never runs code from the file.
        return load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise PolicyFileError(
            f"{weights_path} is not a valid safetensors file ({err}); pickled or torch.save files "
            "are not accepted as policies"
        ) from err


def _build_module(meta: dict[str, Any]) -> nn.Module:
    """The (untrained) module `meta` describes; raises ValueError/TypeError on bad metadata."""
    kind = policy_kind(meta)
    if kind == "actor":
        return Actor(
            meta["state_dim"],
            meta["num_domains"],
            meta["hidden"],
            meta["layers"],
            float(meta.get("floor", 0.0)),
        )
    if kind == "mlp":
        return MLPPolicy(meta["state_dim"], meta["num_domains"], MLPSpec.from_meta(meta))
    T = meta["num_steps"]
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"num_steps must be a positive integer, got {T!r}")
    return TrajectoryPolicy(
        torch.zeros(T, meta["num_domains"], dtype=torch.float64), meta["progress_scale"]
    )


def load_policy(
    policy_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the exported policy (eval mode) and return it with its metadata.

    The module maps states [B, state_dim] to weights on the simplex [B, K] whatever the kind
    (`meta["kind"]`, see the module docstring); its tensors must match the metadata exactly."""
    path = Path(policy_dir)
    _refuse_non_directory(path)
    meta = _read_meta(path)
    weights_path = path / WEIGHTS_FILE
    tensors = _read_tensors(weights_path, device)
    meta_path = path / META_FILE
    try:
        module = _build_module(meta)
    except (ValueError, TypeError, KeyError) as err:
        raise PolicyFileError(
            f"{meta_path}: invalid {policy_kind(meta)!r} policy description: {err}"
        ) from err
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise PolicyFileError(f"{weights_path} does not match {meta_path}: {err}") from err
    if isinstance(module, TrajectoryPolicy):
        _check_trajectory_rows(module.weights.cpu().numpy(), list(meta["domains"]))
    module.to(device).eval()
    return module, meta
