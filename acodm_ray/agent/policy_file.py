"""The exported AC-ODM actor: `actor.safetensors` + `policy.json`, loadable without RLlib.

Only safetensors (plain tensors) and JSON are ever read: a pickle or a torch `.pt` file can run
arbitrary code when loaded, so anything else passed as a policy is refused before it is opened
by a deserializer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from acodm_ray.agent.networks import Actor

WEIGHTS_FILE = "actor.safetensors"
META_FILE = "policy.json"
FORMAT_NAME = "acodm-policy"
FORMAT_VERSION = 1


class PolicyFileError(ValueError):
    """A policy directory is missing, incomplete, or not in the safetensors + JSON format."""


def save_policy(
    out_dir: str | Path,
    actor: Actor,
    domains: list[str],
    state_spec: dict[str, Any],
    config: dict[str, Any],
) -> Path:
    """Write the actor's weights and what is needed to rebuild and feed it; returns the dir."""
    out = Path(out_dir)
    domains = [str(d) for d in domains]
    if len(domains) != actor.num_domains:
        raise PolicyFileError(
            f"{len(domains)} domain names given for an actor with {actor.num_domains} outputs"
        )
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in actor.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "domains": domains,
        "state_dim": actor.state_dim,
        "num_domains": actor.num_domains,
        "hidden": actor.hidden,
        "layers": actor.layers,
        "state_spec": state_spec,
        "config": config,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return out


def _refuse_non_directory(path: Path) -> None:
    if not path.exists():
        raise PolicyFileError(f"policy directory not found: {path}")
    if not path.is_dir():
        raise PolicyFileError(
            f"{path} is a file, not a policy directory: a policy is a directory holding "
            f"{WEIGHTS_FILE} and {META_FILE}. Pickle/torch checkpoints (.pkl, .pt, .pth, .ckpt) "
            "are refused because loading them can execute code; export the actor with "
            "policies.export.export_actor or acodm_ray.agent.policy_file.save_policy."
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
        raise PolicyFileError(f"{meta_path} is not an AC-ODM policy file (format != {FORMAT_NAME!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise PolicyFileError(
            f"{meta_path}: unsupported format_version {meta.get('format_version')!r} "
            f"(this code reads {FORMAT_VERSION})"
        )
    for key in ("domains", "state_dim", "num_domains", "hidden", "layers"):
        if key not in meta:
            raise PolicyFileError(f"{meta_path}: missing key {key!r}")
    if len(meta["domains"]) != meta["num_domains"]:
        raise PolicyFileError(
            f"{meta_path}: {len(meta['domains'])} domains listed but num_domains={meta['num_domains']}"
        )
    return meta


def load_policy(policy_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Actor, dict[str, Any]]:
    """Rebuild the exported actor (eval mode) and return it with its metadata."""
    path = Path(policy_dir)
    _refuse_non_directory(path)
    meta = _read_meta(path)
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise PolicyFileError(f"policy weights not found: {weights_path}")
    try:
        # safetensors parses a JSON header and raw buffers; it never runs code from the file.
        tensors = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise PolicyFileError(
            f"{weights_path} is not a valid safetensors file ({err}); pickled or torch.save files "
            "are not accepted as policies"
        ) from err
    actor = Actor(meta["state_dim"], meta["num_domains"], meta["hidden"], meta["layers"])
    try:
        actor.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise PolicyFileError(f"{weights_path} does not match {path / META_FILE}: {err}") from err
    actor.to(device).eval()
    return actor, meta
