"""A comparison's plots: perplexity over training (average, and one panel per domain) and the domain
weights each run trained with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acodm_ray.compare.runs import RunData
from acodm_ray.compare.summary import ComparisonSummary

# method -> seed -> run, of the methods with a finished run
ByMethod = dict[str, dict[int, RunData]]


def _curve(
    by_seed: dict[int, RunData], key: str
) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """Mean and spread over seeds at the eval steps every seed has."""
    common = sorted(set.intersection(*(set(r.eval_steps) for r in by_seed.values())))
    rows = np.array(
        [[r.ppl[key][r.eval_steps.index(s)] for s in common] for r in by_seed.values()], dtype=float
    )
    spread = rows.std(axis=0, ddof=1) if len(rows) > 1 else None
    return common, rows.mean(axis=0), spread


def plot_perplexity(s: ComparisonSummary, by_method: ByMethod, out_dir: Path) -> dict[str, str]:
    """val_ppl.png (average) and val_ppl_domains.png (one panel per domain), mean ± std over seeds."""
    # lazy: matplotlib; jobs/compare.py --help imports this package
    from acodm_ray.plots import plot_curve_panels, plot_curves

    band = " (band: ± std over seeds)" if len(s.seeds) > 1 else ""
    average = {m: _curve(by_seed, "average") for m, by_seed in by_method.items()}
    panels = {
        k: {m: _curve(by_seed, k) for m, by_seed in by_method.items()}
        for k in ["average", *s.domains]
    }
    return {
        "val_ppl": str(
            plot_curves(
                average,
                out_dir / "val_ppl.png",
                ylabel="average validation perplexity",
                title="average validation perplexity" + band,
            )
        ),
        "val_ppl_domains": str(
            plot_curve_panels(
                panels,
                out_dir / "val_ppl_domains.png",
                title="validation perplexity per domain" + band,
            )
        ),
    }


def plot_weights(s: ComparisonSummary, by_method: ByMethod, out_dir: Path) -> dict[str, str]:
    """weights.png (each method's first seed) and weights_seeds.png (every run): the weights each
    run trained with (a mean over seeds would show a mix no run used)."""
    # lazy: matplotlib; jobs/compare.py --help imports this package
    from acodm_ray.plots import plot_weight_trajectories

    files, first = {}, min(s.seeds)
    traj = {
        m: by_seed[first].weights
        for m, by_seed in by_method.items()
        if first in by_seed and len(by_seed[first].weights)
    }
    if traj:
        files["weights"] = str(
            plot_weight_trajectories(
                traj,
                s.domains,
                out_dir / "weights.png",
                title=f"domain weights per step (seed {first})",
                ncols=3 if len(traj) > 3 else None,
                dpi=80,
            )
        )
    if len(s.seeds) > 1:
        grid = {
            f"{m}, seed {seed}": by_seed[seed].weights
            for m, by_seed in by_method.items()
            for seed in s.seeds
            if seed in by_seed and len(by_seed[seed].weights)
        }
        files["weights_seeds"] = str(
            plot_weight_trajectories(
                grid,
                s.domains,
                out_dir / "weights_seeds.png",
                title="domain weights per step, every run",
                ncols=len(s.seeds),
                dpi=60,
            )
        )
    return files
