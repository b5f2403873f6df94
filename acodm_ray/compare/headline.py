"""One method's figures from its finished runs: per run (`run_summary`) and over its seeds
(`headline_row`), measured against the `Yardsticks` every method shares (the reference's best, uniform's
final value, the static baseline's costs, the decoy domains)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from acodm_ray.compare.figures import SeedSteps, Spread, StepsTo, TopWeight
from acodm_ray.compare.methods import REFERENCE, STATIC_BASELINES
from acodm_ray.compare.runs import RunData
from acodm_ray.compare.stats import (
    best_point,
    decoy_weight_curve,
    headline_steps,
    is_finite_number,
    mean_spread,
    overhead_pct,
    steps_to_final_of,
    steps_to_reference,
)
from acodm_ray.compare.summary import HeadlineRow, RunSummary


@dataclass(frozen=True)
class RunCosts:
    """What one run cost: medians over its steps (ms), peak memory (MiB). None where the run did not
    record it (rank logs off: no mixer time, no worker memory)."""

    step_ms: float | None
    mixer_ms: float | None
    worker_rss_mb: float | None
    total_rss_mb: float | None  # worker + policy server

    @property
    def mixer_pct(self) -> float | None:
        """The mixer's time as a share of the training step it wraps."""
        if (
            is_finite_number(self.mixer_ms)
            and is_finite_number(self.step_ms)
            and self.step_ms > self.mixer_ms
        ):
            return 100.0 * self.mixer_ms / (self.step_ms - self.mixer_ms)
        return None


def _median_ms(seconds: list[float]) -> float | None:
    return 1000.0 * float(np.median(seconds)) if seconds else None


def run_costs(run: RunData) -> RunCosts:
    """The run's median iteration and mixer time, and its peak memory (the total only when both the
    worker's and the policy server's were recorded)."""
    worker, server = run.worker_peak_rss_mb, run.server_peak_rss_mb
    both = is_finite_number(worker) and is_finite_number(server)
    return RunCosts(
        step_ms=_median_ms(run.step_seconds),
        mixer_ms=_median_ms(run.mixer_seconds),
        worker_rss_mb=worker,
        total_rss_mb=worker + server if both else None,
    )


@dataclass(frozen=True)
class Yardsticks:
    """What every method is measured against, from the runs of all of them: steps to the
    reference's best and to uniform's final value (per method and seed), the static baseline and
    its costs per seed (overheads are paired by seed), the decoy domains' columns."""

    domains: list[str]
    to_reference: dict[str, dict[int, SeedSteps]]
    to_uniform_final: dict[str, dict[int, SeedSteps]]
    static: str | None
    static_costs: dict[int, RunCosts]
    decoy_columns: list[int]


def yardsticks(
    by_method: dict[str, dict[int, RunData]], domains: list[str], decoys: list[str]
) -> Yardsticks:
    """The yardsticks from every method's finished runs (`by_method`), with `decoys` among `domains`."""
    curves = {
        m: {seed: (r.eval_steps, r.ppl["average"]) for seed, r in by_seed.items()}
        for m, by_seed in by_method.items()
    }
    static = next((m for m in STATIC_BASELINES if m in by_method), None)
    return Yardsticks(
        domains=domains,
        to_reference=steps_to_reference(curves) if REFERENCE in curves else {},
        to_uniform_final=steps_to_final_of(curves, "uniform") if "uniform" in curves else {},
        static=static,
        static_costs={s: run_costs(r) for s, r in by_method.get(static, {}).items()},
        decoy_columns=[domains.index(d) for d in decoys],
    )


def _final(values: list[float]) -> float | None:
    return values[-1] if values else None


def _best(run: RunData) -> float | None:
    return (best_point(run.eval_steps, run.ppl["average"]) or (None, None))[1]


def _top(weights: np.ndarray, domains: list[str]) -> TopWeight:
    return TopWeight(domain=domains[int(np.argmax(weights))], weight=float(np.max(weights)))


def _spread_of(costs: dict[int, RunCosts], figure: str) -> Spread | None:
    return mean_spread([getattr(c, figure) for c in costs.values()])


def _overheads(costs: dict[int, RunCosts], ys: Yardsticks) -> dict[str, Spread | None]:
    """Step time and memory against the static baseline's run of the same seed, in %."""
    base = ys.static_costs

    def pct(figure: str) -> Spread | None:
        return overhead_pct(
            {s: getattr(c, figure) for s, c in costs.items()},
            {s: getattr(c, figure) for s, c in base.items()},
        )

    return {
        "step_time_overhead_pct": pct("step_ms"),
        "memory_overhead_pct": pct("total_rss_mb"),
        "worker_memory_overhead_pct": pct("worker_rss_mb"),
    }


def headline_row(
    method: str,
    by_seed: dict[int, RunData],
    walls: dict[int, float | None],
    ys: Yardsticks,
    proxy_wall_s: Spread | None = None,
) -> HeadlineRow:
    """`method`'s figures, mean ± spread over its finished runs (`by_seed`, not empty)."""
    domains, runs = ys.domains, list(by_seed.values())
    costs = {s: run_costs(r) for s, r in by_seed.items()}
    weights = np.mean([r.weights[-1] for r in runs if len(r.weights)], axis=0)
    compared = ys.static is not None and method != ys.static
    return HeadlineRow(
        runs=len(by_seed),
        final_val_ppl={
            k: mean_spread([_final(r.ppl[k]) for r in runs]) for k in ["average", *domains]
        },
        best_average_val_ppl=mean_spread([_best(r) for r in runs]),
        step_ms=_spread_of(costs, "step_ms"),
        mixer_ms=_spread_of(costs, "mixer_ms"),
        mixer_pct_of_step=_spread_of(costs, "mixer_pct"),
        worker_peak_rss_mb=_spread_of(costs, "worker_rss_mb"),
        peak_rss_mb=_spread_of(costs, "total_rss_mb"),
        wall_s=mean_spread(list(walls.values())),
        final_weights={d: float(w) for d, w in zip(domains, weights)},
        max_final_weight=_top(weights, domains),
        max_final_weight_per_seed={
            s: _top(r.weights[-1], domains) for s, r in by_seed.items() if len(r.weights)
        },
        steps_to_reference=_headline_steps(ys.to_reference, method),
        steps_to_uniform_final=_headline_steps(ys.to_uniform_final, method),
        decoy_weight=decoy_weight_curve(
            {s: r.weights for s, r in by_seed.items()}, ys.decoy_columns
        )
        if ys.decoy_columns
        else None,
        **(_overheads(costs, ys) if compared else {}),
        proxy_wall_s=proxy_wall_s,
    )


def _headline_steps(per_method: dict[str, dict[int, SeedSteps]], method: str) -> StepsTo | None:
    return headline_steps(per_method[method]) if method in per_method else None


def run_summary(
    method: str, seed: int, run: RunData, wall_s: float | None, ys: Yardsticks
) -> RunSummary:
    """One run's own numbers, as the summary keeps them next to the headline."""
    costs = run_costs(run)
    return RunSummary(
        method=method,
        seed=seed,
        run_dir=run.run_dir,
        final_val_ppl={k: _final(run.ppl[k]) for k in ["average", *ys.domains]},
        best_average_val_ppl=_best(run),
        eval_steps=run.eval_steps,
        average_val_ppl=run.ppl["average"],
        step_ms_median=costs.step_ms,
        mixer_ms_median=costs.mixer_ms,
        worker_peak_rss_mb=run.worker_peak_rss_mb,
        server_peak_rss_mb=run.server_peak_rss_mb,
        run_seconds=run.seconds,
        wall_s=wall_s,
        steps_to_reference=ys.to_reference.get(method, {}).get(seed),
        final_weights={d: float(w) for d, w in zip(ys.domains, run.weights[-1])}
        if len(run.weights)
        else None,
        agent=run.summary.get("agent"),
    )
