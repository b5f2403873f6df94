"""The optimizer and its learning-rate schedule: AdamW with decoupled weight decay on matrices only,
linear warm-up then cosine decay.

Split out of `train_step` because they are the part of a step other loops reuse as they are: the
plain PyTorch example and the step benchmark's bare loop build the same optimizer and schedule, so
their numbers compare with `LMTrainer.step`'s.
"""

from __future__ import annotations

import math

import torch

from acodm_ray.config import ExperimentConfig


def warmup_cosine(step: int, warmup: int, total: int, lr: float, min_lr: float) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at `total` steps."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=tuple(cfg.train.betas))
