"""How much of the gap between uniform and a known answer a method closes, seed by seed.

The goal of issue 28 in a controlled setting (one whose known answer is a static mix, method `file`):
per seed, the share of the gap closed, (uniform - method) / (uniform - known answer) on the final
average validation perplexity, and the steps a method needs to reach uniform's final average
perplexity as a share of uniform's own steps (first evaluation at or below it; "–" if never). In a
natural setting (no known answer: `--known` empty) the paired difference to uniform against
uniform's own seed standard deviation. Runs are read from any number of comparison summaries and
matched by (method, seed), so a method run on its own pairs with the runs of an earlier table (target
runs are deterministic given config and seed, benchmarks/paired.py). With a run's directory at hand
(its `steps.csv`), also the weight it put on the decoy domains over the whole run.

    python benchmarks/gap.py benchmarks/results/mixing-swamped.json results/bench-swamped/summary.json \
        --methods acodm,acodm-eval --known file --decoys noise,repeated
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.compare.stats import mean_spread  # noqa: E402
from benchmarks.report import table  # noqa: E402


def runs_by_key(summaries: list[dict]) -> dict[tuple[str, int], dict]:
    """(method, seed) -> run, the later summary winning where two hold the same run."""
    out: dict[tuple[str, int], dict] = {}
    for summary in summaries:
        for run in summary["runs"].values():
            if run.get("final_val_ppl"):
                out[(run["method"], int(run["seed"]))] = run
    return out


def shadowed(summaries: list[dict], names: list[str]) -> list[str]:
    """A sentence for each (method, seed) that more than one summary holds, naming the summary
    whose run is used (the later) and the ones it replaces. Why: a method name can run something
    else after a default changes, and an old summary passed last silently wins."""
    where: dict[tuple[str, int], list[str]] = {}
    for summary, name in zip(summaries, names):
        for run in summary["runs"].values():
            if run.get("final_val_ppl"):
                where.setdefault((run["method"], int(run["seed"])), []).append(name)
    return [
        f"{method} seed {seed}: using the run in {found[-1]}, not the one in {', '.join(found[:-1])}"
        for (method, seed), found in sorted(where.items())
        if len(found) > 1
    ]


def steps_to(run: dict, target: float) -> int | None:
    """The first evaluated step whose average validation perplexity is at or below `target`."""
    for step, value in zip(run["eval_steps"], run["average_val_ppl"]):
        if value <= target + 1e-9:
            return int(step)
    return None


def decoy_weight(run: dict, prefixes: tuple[str, ...]) -> float | None:
    """Mean over the run's steps of the summed weight on the decoy domains (from its steps.csv)."""
    path = Path(run.get("run_dir") or "") / "steps.csv"
    if not prefixes or not path.is_file():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c.startswith("weight/") and c[7:].startswith(prefixes)]
    return float(np.mean([sum(float(r[c]) for c in cols) for r in rows]))


def gap_rows(
    runs: dict[tuple[str, int], dict], method: str, known: str | None, decoys: tuple[str, ...]
) -> tuple[list[list[object]], dict[str, object]]:
    seeds = sorted(s for m, s in runs if m == method and (("uniform", s) in runs))
    rows, closed, ratios, diffs = [], [], [], []
    for s in seeds:
        run, uni = runs[(method, s)], runs[("uniform", s)]
        m, u = run["final_val_ppl"]["average"], uni["final_val_ppl"]["average"]
        u_steps = steps_to(uni, u)
        reach = steps_to(run, u)
        ratio = reach / u_steps if reach is not None and u_steps else None
        ratios.append(ratio)
        diffs.append(m - u)
        row = [method, s, f"{m:.2f}", f"{u:.2f}", f"{m - u:+.2f}"]
        if known and (known, s) in runs:
            k = runs[(known, s)]["final_val_ppl"]["average"]
            share = (u - m) / (u - k) if u != k else float("nan")
            closed.append(share)
            row += [f"{k:.2f}", f"{100 * share:.0f}%"]
        elif known:
            row += ["–", "–"]
        row.append("–" if reach is None else f"{reach} ({ratio:.2f})")
        dw = decoy_weight(run, decoys)
        row.append("–" if dw is None else f"{dw:.3f}")
        rows.append(row)
    total = {
        "method": method,
        "seeds": seeds,
        "difference_to_uniform": mean_spread(diffs),
        "gap_closed": closed,
        "steps_ratio": ratios,
    }
    return rows, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", type=Path, nargs="+", help="comparison summary.json files")
    ap.add_argument("--methods", required=True, help="comma-separated methods to report")
    ap.add_argument("--known", default="file", help="the known answer's method ('' for none)")
    ap.add_argument("--decoys", default="", help="comma-separated decoy domain name prefixes")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    summaries = [json.loads(p.read_text()) for p in args.summaries]
    for line in shadowed(summaries, [str(p) for p in args.summaries]):
        print(f"gap: {line} (the later summary wins)", file=sys.stderr)
    runs = runs_by_key(summaries)
    decoys = tuple(filter(None, args.decoys.split(",")))
    head = ["method", "seed", "final avg val ppl", "uniform", "difference"]
    if args.known:
        head += ["known answer", "gap closed"]
    head += ["steps to uniform's final (ratio)", "decoy weight over the run"]
    rows, totals = [], []
    for method in args.methods.split(","):
        r, t = gap_rows(runs, method, args.known or None, decoys)
        rows += r
        totals.append(t)
    print(table(head, rows))
    uni = [runs[k]["final_val_ppl"]["average"] for k in sorted(runs) if k[0] == "uniform"]
    if not uni:
        raise SystemExit("no uniform run in these summaries: nothing to compare with")
    spread = mean_spread(uni)
    print(f"\nuniform: {spread.mean:.2f} ± {spread.std:.2f} over seeds")
    for t in totals:
        d = t["difference_to_uniform"]
        closed = ", ".join(f"{100 * c:.0f}%" for c in t["gap_closed"])
        print(
            f"{t['method']}: {d.mean:+.2f} ± {d.std:.2f} against uniform"
            + (f"; gap closed per seed {closed}" if closed else "")
        )
    if args.json:
        for t in totals:
            t["difference_to_uniform"] = t["difference_to_uniform"].to_json()
        args.json.write_text(json.dumps({"rows": rows, "totals": totals}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
