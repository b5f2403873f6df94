"""The figures a comparison's summary is made of (`stats` computes them): a mean ± spread over seeds,
one seed's steps to a target perplexity and their headline over seeds, the weight on decoy domains,
a run's largest weight."""

from __future__ import annotations

from dataclasses import dataclass

from acodm_ray.compare.records import JsonRecord


@dataclass(frozen=True)
class Spread(JsonRecord):
    """One figure over seeds: the mean, the sample standard deviation (0 for one seed), the range and
    how many seeds had a finite value."""

    mean: float
    std: float
    min: float
    max: float
    n: int


@dataclass(frozen=True)
class SeedSteps(JsonRecord):
    """One seed's steps to a target value of the average validation perplexity: the first evaluated
    step at or below it (None: never) and their ratio to the steps the reference run needed."""

    target: float
    steps: int | None
    reference_steps: int
    ratio: float | None


@dataclass(frozen=True)
class StepsTo(JsonRecord):
    """Steps to a target over seeds: how many seeds there were and how many reached it; the steps
    and ratios are over the seeds that reached it (None when none did)."""

    seeds: int
    reached: int
    steps: Spread | None
    ratio: Spread | None
    per_seed: dict[int, SeedSteps]


@dataclass(frozen=True)
class DecoyWeight(JsonRecord):
    """The weight on the decoy domains (summed) at fractions of training (0.25 -> a quarter of the
    way), and its mean over the whole run; each over seeds."""

    at: dict[float, Spread | None]
    mean: Spread | None


@dataclass(frozen=True)
class TopWeight(JsonRecord):
    """The largest domain weight at the last step, and its domain."""

    domain: str
    weight: float
