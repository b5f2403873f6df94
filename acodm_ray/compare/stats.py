"""The headline computations on perplexity curves (pure functions, lower is better): steps to reach a
target, best points, mean ± sample std over seeds, overheads against a baseline, the convergence
check and the weight on decoy domains."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from acodm_ray.compare.figures import DecoyWeight, SeedSteps, Spread, StepsTo
from acodm_ray.compare.methods import REFERENCE, CompareError

Curves = dict[
    str, dict[int, tuple[Sequence[int], Sequence[float]]]
]  # method -> seed -> (steps, values)


def is_finite_number(x: Any) -> bool:
    return (
        x is not None
        and isinstance(x, (int, float, np.floating, np.integer))
        and math.isfinite(float(x))
    )


def steps_to_reach(steps: Sequence[int], values: Sequence[float], target: float) -> int | None:
    """First step whose value is <= target (lower is better); None if it never gets there."""
    for s, v in zip(steps, values):
        if is_finite_number(v) and float(v) <= target:
            return int(s)
    return None


def best_point(steps: Sequence[int], values: Sequence[float]) -> tuple[int, float] | None:
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if is_finite_number(v)]
    if not pairs:
        return None
    value = min(v for _, v in pairs)
    return next(p for p in pairs if p[1] == value)


def mean_spread(values: Sequence[float | None]) -> Spread | None:
    """Mean, sample standard deviation (0 for one value), min, max and count of the finite values."""
    xs = [float(v) for v in values if is_finite_number(v)]
    if not xs:
        return None
    return Spread(
        mean=float(np.mean(xs)),
        std=float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
        min=min(xs),
        max=max(xs),
        n=len(xs),
    )


def steps_to_reference(
    curves: Curves, reference: str = REFERENCE
) -> dict[str, dict[int, SeedSteps]]:
    """Per method and seed: the reference's best value of that seed (`target`), the steps the method
    needs to reach it (None: not reached) and their ratio to the steps the reference needs (its
    first step at its best). `curves`: {method: {seed: (eval steps, average val ppl)}}."""
    if reference not in curves:
        raise CompareError(f"the reference method {reference!r} has no runs")
    out: dict[str, dict[int, SeedSteps]] = {m: {} for m in curves}
    for seed, (ref_steps, ref_values) in curves[reference].items():
        ref_best = best_point(ref_steps, ref_values)
        if ref_best is None:
            continue
        ref_step, target = ref_best
        for method, by_seed in curves.items():
            if seed not in by_seed:
                continue
            steps = steps_to_reach(*by_seed[seed], target)
            out[method][seed] = SeedSteps(
                target=target,
                steps=steps,
                reference_steps=ref_step,
                ratio=None if steps is None else steps / ref_step,
            )
    return out


def steps_to_final_of(curves: Curves, baseline: str) -> dict[str, dict[int, SeedSteps]]:
    """Per method and seed: the first evaluated step at which the method's average perplexity is at
    or below `baseline`'s FINAL value of the same seed (None: never), and its ratio to the baseline's
    own number of steps (its last evaluated step)."""
    out: dict[str, dict[int, SeedSteps]] = {m: {} for m in curves}
    for seed, (b_steps, b_values) in curves.get(baseline, {}).items():
        if not b_values or not is_finite_number(b_values[-1]):
            continue
        target, total = float(b_values[-1]), int(b_steps[-1])
        for method, by_seed in curves.items():
            if seed in by_seed:
                steps = steps_to_reach(*by_seed[seed], target)
                out[method][seed] = SeedSteps(
                    target=target,
                    steps=steps,
                    reference_steps=total,
                    ratio=None if steps is None else steps / total,
                )
    return out


def last_quarter_gain(steps: Sequence[int], values: Sequence[float]) -> float | None:
    """Relative improvement of the curve over the last quarter of training: 1 - v(T) / v(3T/4), with
    v(3T/4) the value at the last evaluated step at or before 3T/4 (the convergence check)."""
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if is_finite_number(v)]
    if len(pairs) < 2:
        return None
    total = pairs[-1][0]
    before = [v for s, v in pairs if s <= 0.75 * total]
    return None if not before else 1.0 - pairs[-1][1] / before[-1]


def headline_steps(per_seed: dict[int, SeedSteps]) -> StepsTo:
    """Mean ± spread over seeds of the steps and ratios (of the seeds that reached the target)."""
    reached = [r for r in per_seed.values() if r.steps is not None]
    return StepsTo(
        seeds=len(per_seed),
        reached=len(reached),
        steps=mean_spread([r.steps for r in reached]),
        ratio=mean_spread([r.ratio for r in reached]),
        per_seed=dict(per_seed),
    )


def overhead_pct(
    values: dict[int, float | None], baseline: dict[int, float | None]
) -> Spread | None:
    """(value / baseline - 1) * 100 per seed (same seed), then mean ± spread."""
    pct = [
        100.0 * (values[s] / baseline[s] - 1.0)
        for s in values
        if is_finite_number(values.get(s)) and is_finite_number(baseline.get(s)) and baseline[s] > 0
    ]
    return mean_spread(pct)


DECOY_POINTS = (0.0, 0.1, 0.25, 0.5, 1.0)  # where in training the decoys' weight is reported


def decoy_weight_curve(weights_by_seed: dict[int, np.ndarray], idx: list[int]) -> DecoyWeight:
    """The weight a method put on the decoy domains `idx` (summed), at the fractions DECOY_POINTS of
    training (mean ± spread over seeds), and its mean over the whole run."""
    points: dict[float, Spread | None] = {}
    for frac in DECOY_POINTS:
        vals = [
            float(w[min(len(w) - 1, int(round(frac * (len(w) - 1)))), idx].sum())
            for w in weights_by_seed.values()
            if len(w)
        ]
        points[frac] = mean_spread(vals)
    overall = mean_spread(
        [float(w[:, idx].sum(axis=1).mean()) for w in weights_by_seed.values() if len(w)]
    )
    return DecoyWeight(at=points, mean=overall)
