"""signals.eval_weighting "fair": weight each evaluated domain by how little the mix is helping it.

The "eval" score pays domain i for <g_i, grad L_E>, its share of the step's first-order decrease of
the evaluated domains' MEAN loss. A domain that helps many evaluated domains a little (plain prose,
when four of seven targets are prose) then outscores one that helps only itself (LaTeX, C headers),
and a mix that follows the score starves the least alike targets. "fair" aims at
sum_e log D_e instead, D_e the per-step decrease of evaluated domain e's loss under the mix
(proportional fairness, the Nash bargaining solution): its gradient in the weight of domain i is
sum_e <g_i, grad L_e> / D_e, i.e. the reference rows' losses weighted by c_e = 1 / D_e. A target the
mix already serves well counts less, one it neglects counts more, and the score pushes back as soon
as the mix leans, whatever the state features let the policy learn.

D_e is measured, not modelled: each step, each reference row r (domain e_r) has its own gradient
h_r, and the step's gradient G on the same matrices (after the workers' average) gives the row's
first-order loss decrease per unit learning rate, <G, h_r>. `TargetProgress` keeps a running mean of
it per domain; the weights of a step come from the means before that step, so they are independent
of the step's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FAIR_BETA = 0.95  # decay of the running mean of each domain's decrease (~20 of its rows)
FAIR_FLOOR = 0.1  # D_e below FAIR_FLOOR x the largest D counts as that: c spans at most 10x


def fair_weights(
    decrease: np.ndarray, eval_indices: Sequence[int], floor: float = FAIR_FLOOR
) -> np.ndarray:
    """[K] c_e = 1 / max(D_e, floor x max_E D) on the evaluated domains E, divided by their mean over
    E (so the reference keeps its size), 0 elsewhere. A domain with no estimate yet (NaN) takes the
    mean of the others' c; all 1 while no estimate is positive (nothing to be fair about yet).

    Why the floor: an estimate at or below zero (the mix does not help that target, or noise) would
    otherwise give an infinite or negative weight; at the floor it gets the largest weight."""
    out = np.zeros(len(decrease))
    d = np.asarray(decrease, dtype=np.float64)[list(eval_indices)]
    seen = np.isfinite(d)
    if not seen.any() or d[seen].max() <= 0:
        out[list(eval_indices)] = 1.0
        return out
    inverse = 1.0 / np.maximum(d[seen], floor * d[seen].max())
    c = np.full(len(d), inverse.mean())
    c[seen] = inverse
    out[list(eval_indices)] = c / c.mean()
    return out


class TargetProgress:
    """Per domain, the bias-corrected running mean (decay FAIR_BETA, as Adam's) of the first-order
    loss decrease its reference rows measured; NaN for a domain no row has measured yet."""

    def __init__(self, num_domains: int, beta: float = FAIR_BETA) -> None:
        self.beta = float(beta)
        self.mean = np.zeros(num_domains)
        self.count = np.zeros(num_domains, dtype=np.int64)

    @property
    def decrease(self) -> np.ndarray:
        """[K] the running means D_e (NaN where never measured)."""
        out = np.full(len(self.mean), np.nan)
        seen = self.count > 0
        out[seen] = self.mean[seen] / (1.0 - self.beta ** self.count[seen])
        return out

    def update(self, sums: np.ndarray, counts: np.ndarray) -> None:
        """Fold in one step's measurements: per domain the sum of its rows' decreases and how many
        rows it had (across workers); a domain with no row this step keeps its mean."""
        sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
        hit = counts > 0
        step_mean = np.where(hit, sums / np.maximum(counts, 1), 0.0)
        self.mean[hit] = self.beta * self.mean[hit] + (1.0 - self.beta) * step_mean[hit]
        self.count[hit] += 1

    def state_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "count": self.count.tolist()}

    def load_state_dict(self, state: dict[str, list]) -> None:
        if len(state["mean"]) != len(self.mean):
            raise ValueError(
                f"target progress saved for {len(state['mean'])} domains, this run has {len(self.mean)}"
            )
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.count = np.asarray(state["count"], dtype=np.int64)
