"""Actions -> domain weights: the one mapping the env applies and exported policies replay.

An RL algorithm's action a [..., K] becomes weights on the simplex by `env.action_mapping`:
- "simplex": w = (max(a, 0) + eps) / sum(max(a, 0) + eps), eps = `env.action_epsilon` > 0, so every
  domain keeps a little weight and an all-negative action still gives a distribution;
- "softmax": w = softmax(a), for actions that are unbounded logits.

Computed in float64 numpy along the last axis; a batch of rows gives, row for row, the same bits
as each row alone (numpy reduces each contiguous row the same way), so an exported policy maps an
action to exactly the weights the env would (a torch twin would differ in the last bit).
"""

from __future__ import annotations

import numpy as np

ACTION_MAPPINGS = ("simplex", "softmax")


def action_to_weights(
    action: np.ndarray, mapping: str = "simplex", eps: float = 1e-6
) -> np.ndarray:
    """Weights [..., K] for actions [..., K] (K along the last axis)."""
    a = np.asarray(action, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action has non-finite entries: {a.tolist()}")
    if mapping == "simplex":
        a = np.maximum(a, 0.0) + eps
        return a / a.sum(axis=-1, keepdims=True)
    if mapping == "softmax":
        z = np.exp(a - a.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown action mapping {mapping!r}; choose one of {list(ACTION_MAPPINGS)}")
