"""`StepSignals`: what one optimizer step reports, the record every mixer, metric and policy reads.

Split out of `train_step` because its readers are many and mostly not trainers: the mixers learn
from it, the policy server and client pass it between processes, metrics log it, and the any-loop
feedback builds it without an `LMTrainer` at all. Holding it apart keeps those modules from depending
on the training step (and the model and sampler it pulls in) just to name the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class StepSignals:
    step: int  # optimizer steps done, after this one
    loss: float  # mean loss over the step's micro-batches
    losses: np.ndarray  # [K] mean loss per domain in this step; NaN where not sampled
    counts: np.ndarray  # [K] sequences seen per domain in this step (all workers)
    scores: np.ndarray  # [K] the reward vector (signals.score); NaN = not scored ("total")
    raw_scores: (
        np.ndarray
    )  # [K] the paper's alignment scores before z-normalisation (any signals.score)
    state: np.ndarray  # [3K + 2L + 1] state after the step
    weights: np.ndarray  # [K] the weights the step sampled with
    lr: float
    grad_norm: float
    tokens: int  # tokens trained on in this step (all workers)
    seconds: float
    finite: bool = True
    effective: np.ndarray | None = (
        None  # [K] each domain's share of the step's loss (the mix trained on)
    )
    extra: dict[str, Any] = field(default_factory=dict)
