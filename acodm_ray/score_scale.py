"""The running scale of the "total", "cross" and "eval" scores (signals.score), and their window
(signals.score_window): what turns a step's raw alignment scores into the agent's reward vector."""

from __future__ import annotations

import json

import numpy as np


class RunningScale:
    """Divides scores by a running mean of their magnitude instead of z-scoring them per step, so
    their sign and their sum survive (a step that helps every domain scores positive everywhere)
    while the reward keeps a steady size as gradients shrink over training.

    m_t = beta m_{t-1} + (1 - beta) mean_i |s_i| (over finite entries), scale = m_t / (1 - beta^t)
    (bias-corrected, as in Adam); scaled = clip(s / scale, -clip, clip); NaN stays NaN.

    With `window` W > 1 (signals.score_window) the output is, per domain, the mean of its scaled
    scores over the last W steps that had any score (NaN entries skipped; NaN if none is finite): a
    step's score is mostly micro-batch noise (benchmarks/score_noise.py), and a mean over W steps
    has about 1/sqrt(W) of it, at the price of lagging a trend by (W - 1) / 2 steps."""

    def __init__(self, beta: float = 0.95, clip: float = 10.0, window: int | None = 1) -> None:
        window = 1 if window is None else window  # unresolved (signals.resolve_named_targets): 1
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.beta, self.clip, self.window = float(beta), float(clip), int(window)
        self.mean_abs = 0.0
        self.count = 0
        self.recent: list[np.ndarray] = []  # the last `window` scaled score vectors

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        finite = np.isfinite(scores)
        if not finite.any():
            return scores.copy()
        self.count += 1
        self.mean_abs = self.beta * self.mean_abs + (1.0 - self.beta) * float(
            np.abs(scores[finite]).mean()
        )
        scale = self.mean_abs / (1.0 - self.beta**self.count)
        out = scores / scale if scale > 0 else np.zeros_like(scores)
        out = np.where(finite, np.clip(out, -self.clip, self.clip), np.nan)
        if self.window == 1:
            return out
        self.recent = [*self.recent, out][-self.window :]
        stack = np.stack(self.recent)
        seen = np.isfinite(stack).sum(axis=0)
        return np.where(seen > 0, np.nansum(stack, axis=0) / np.maximum(seen, 1), np.nan)

    def state_dict(self) -> dict:
        return {
            "mean_abs": self.mean_abs,
            "count": self.count,
            "recent": json.dumps(
                [[None if not np.isfinite(x) else float(x) for x in row] for row in self.recent]
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        self.mean_abs, self.count = float(state["mean_abs"]), int(state["count"])
        rows = json.loads(state.get("recent", "[]"))  # absent before signals.score_window
        self.recent = [np.array([np.nan if x is None else x for x in row]) for row in rows]
