"""Paired comparison of a method run later against the methods of an earlier comparison.

Target runs are deterministic given the config and the seed (uniform on seed 100 gives 92.2 again
after the eval reward was added), so a method run on its own (`jobs/compare.py --methods acodm-eval`)
pairs seed by seed with the runs already in a committed summary (benchmarks/results/mixing*.json)
without running those again. Prints a Markdown table: final average validation perplexity per seed,
the paired difference (new - old, mean ± sample std over seeds; negative = new is better), how many
seeds the new method is better on, its largest final weight and, with --decoys, its final weight on
the decoy domains.

    python benchmarks/paired.py NEW_SUMMARY OLD_SUMMARY --method acodm-eval --against uniform,odm,acodm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.compare.stats import mean_spread  # noqa: E402
from acodm_ray.compare.summary import ComparisonSummary  # noqa: E402
from benchmarks.report import table  # noqa: E402


def finals(summary: ComparisonSummary, method: str) -> dict[int, float]:
    """seed -> final average validation perplexity of `method`'s runs in a comparison summary."""
    return {
        r.seed: float(r.final_val_ppl["average"])
        for r in summary.runs.values()
        if r.method == method and r.final_val_ppl
    }


def final_weights(summary: ComparisonSummary, method: str) -> dict[int, dict[str, float]]:
    """seed -> the domain weights of `method`'s run at its last step."""
    return {
        r.seed: r.final_weights
        for r in summary.runs.values()
        if r.method == method and r.final_weights
    }


def paired_rows(new: dict[int, float], old: dict[str, dict[int, float]]) -> list[list[object]]:
    """One row per earlier method: its finals, the paired difference and the seeds won."""
    rows = []
    for name, theirs in old.items():
        seeds = sorted(set(new) & set(theirs))
        if not seeds:
            raise SystemExit(
                f"no seed in common between the new runs {sorted(new)} and {name}'s {sorted(theirs)}"
            )
        diff = mean_spread([new[s] - theirs[s] for s in seeds])
        wins = sum(new[s] < theirs[s] for s in seeds)
        rows.append(
            [
                name,
                ", ".join(f"{theirs[s]:.1f}" for s in seeds),
                f"{diff.mean:+.2f} ± {diff.std:.2f}",
                f"{wins}/{len(seeds)}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("new", type=Path, help="summary.json of the comparison that ran the new method")
    ap.add_argument(
        "old",
        type=Path,
        help="summary of the earlier comparison (e.g. benchmarks/results/mixing.json)",
    )
    ap.add_argument("--method", required=True)
    ap.add_argument(
        "--against", required=True, help="comma-separated methods of the earlier comparison"
    )
    ap.add_argument(
        "--decoys", default="", help="comma-separated decoy domains whose final weight to report"
    )
    args = ap.parse_args(argv)
    new_summary, old_summary = ComparisonSummary.read(args.new), ComparisonSummary.read(args.old)
    new = finals(new_summary, args.method)
    if not new:
        raise SystemExit(f"{args.new} has no finished run of {args.method!r}")
    old = {m: finals(old_summary, m) for m in args.against.split(",")}
    spread = mean_spread(list(new.values()))
    print(
        f"{args.method}, seeds {sorted(new)}: final avg val ppl {', '.join(f'{new[s]:.1f}' for s in sorted(new))} "
        f"({spread.mean:.1f} ± {spread.std:.1f})"
    )
    weights = final_weights(new_summary, args.method)
    largest = {s: max(w.items(), key=lambda kv: kv[1]) for s, w in sorted(weights.items())}
    print(
        "largest final weight per seed: " + ", ".join(f"{d} {x:.2f}" for d, x in largest.values())
    )
    for decoy in filter(None, args.decoys.split(",")):
        print(
            f"final weight on {decoy} per seed: "
            + ", ".join(f"{w[decoy]:.3f}" for _, w in sorted(weights.items()))
        )
    print()
    print(
        table(
            [
                f"{args.method} against",
                "its finals per seed",
                f"paired difference ({args.method} - it)",
                f"seeds {args.method} is better",
            ],
            paired_rows(new, old),
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
