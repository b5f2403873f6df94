"""Guards for paths built from user input (run names), so a run never writes outside its root.

`check_output_path(run_root, name)` is what the entry points call before creating a run dir from
`--name` / the config's `name`: `runs/` + "demo" is fine, "../x", "/etc", "a/../../b" and a
symlink inside the root that leads out of it are refused with an `UnsafePathError` that names the
value. The root itself (`output_dir`, `--output-dir`) is the operator's choice and may be anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from acodm_ray.errors import AcodmError


class UnsafePathError(AcodmError, ValueError):
    """A run name or path would put the run outside its output root."""


def check_output_path(run_root: str | Path, name: str) -> Path:
    """`run_root / name` (normalised, not resolved: a drop-in for `Path(root) / name`), after checking
    that it stays inside `run_root`.

    Refuses: an empty name or one that is only `.`; absolute names (`/x`, `~/x`, `C:\\x`); any `..`
    component; NUL bytes; and names whose resolved path leaves the root through a symlink (one
    that exists already, at any depth). Sub-directories (`sweep/run-1`) are allowed.
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"run name must be a string, got {type(name).__name__} {name!r}")
    if "\x00" in name:
        raise UnsafePathError(f"run name {name!r} contains a NUL byte")
    if not name.strip() or name.strip() in (".", "./"):
        raise UnsafePathError(
            f"run name {name!r} is empty; choose a name such as 'demo-proxy-acodm'"
        )
    if (
        name.startswith("~")
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
    ):
        raise UnsafePathError(
            f"run name {name!r} is an absolute path; give a name relative to the output root "
            f"{str(run_root)!r} (use --output-dir to change the root)"
        )
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(
            f"run name {name!r} contains '..'; run names must stay inside {str(run_root)!r}"
        )
    if not parts:
        raise UnsafePathError(f"run name {name!r} names the output root itself")

    root = Path(run_root).expanduser()
    root_real = Path(os.path.realpath(root))
    target = root.joinpath(*parts)
    target_real = Path(os.path.realpath(target))  # follows every existing symlink on the way
    if target_real == root_real or not target_real.is_relative_to(root_real):
        raise UnsafePathError(
            f"run path {str(target)!r} resolves to {str(target_real)!r}, outside the output root "
            f"{str(root_real)!r} (a symlink leads out of it); remove the link or choose another name"
        )
    return target
