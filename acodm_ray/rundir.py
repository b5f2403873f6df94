"""Run directories: where a run writes, and the rule that a finished run is never clobbered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from acodm_ray.config import to_dict
from acodm_ray.errors import AcodmError


class RunDirExistsError(AcodmError, FileExistsError):
    """The run directory already holds a run, and neither resume nor overwrite was asked for."""


def check_run_dir(path: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse what `prepare_run_dir` would refuse, touching nothing (a job asks before it starts Ray)."""
    path = Path(path)
    if resume and overwrite:
        raise ValueError("choose one of resume and overwrite, not both")
    holds_a_run = path.exists() and any(path.iterdir())
    if holds_a_run and not (resume or overwrite):
        raise RunDirExistsError(
            f"run directory {path} already exists; pass --resume to continue it, --overwrite to "
            f"replace it, or choose another --name"
        )
    if resume and not holds_a_run:
        raise FileNotFoundError(f"cannot resume: run directory {path} does not exist")
    return path


def prepare_run_dir(path: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Create `path` for a new run, or reuse it for `resume`; refuse to write over an old run."""
    path = check_run_dir(path, resume, overwrite)
    if overwrite and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(run_dir: Path, cfg: Any) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def trim_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite the JSON-lines file `path` with only the records `keep` accepts (nothing if it does not
    exist). On resume every log drops what was written after the checkpoint it resumes from, so no
    step or iteration appears twice."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and keep(json.loads(line))]
        path.write_text("".join(line + "\n" for line in kept))
