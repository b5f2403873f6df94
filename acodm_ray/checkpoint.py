"""Checkpoint files: written atomically, read without running code.

Split out of `train_step` because every stage writes checkpoints (one-process pretraining, the Ray
Train workers, the any-loop feedback, the target driver reading them back) and none of them should
need the training step to do it. Both guarantees live here once: a crash mid-write leaves the last
checkpoint whole, and `torch.load` with `weights_only=True` refuses a file that would run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename), so a crash mid-write never corrupts the last checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True` (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a checkpoint
        raise ValueError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {err})"
        ) from err
