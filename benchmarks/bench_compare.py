"""Put a finished method comparison (jobs/compare.py) into BENCHMARKS.md, section "comparison" (or
another: `--section ablation --title ...` for the ablation study).

    python jobs/compare.py --config configs/demo.yaml --seeds 3
    python benchmarks/bench_compare.py --summary results/demo-compare/summary.json \
        --command "python jobs/compare.py --config configs/demo.yaml --seeds 3" \
        --notes benchmarks/results/compare_notes.md

Copies the comparison's PNGs to benchmarks/results/<section>_*.png (committed, so BENCHMARKS.md can link
them; "compare_*" for the default section), its summary to benchmarks/results/<that>.json, and writes
the section: command, machine,
wall-clock, budgets, the table (table.md), the plots and the reading (--notes, a markdown file written
by whoever read the numbers; regenerate it when the numbers change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.compare.summary import ComparisonSummary  # noqa: E402
from benchmarks.report import update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLOTS = {
    "val_ppl": "average validation perplexity",
    "val_ppl_domains": "per-domain validation perplexity",
    "weights": "domain weights over steps",
    "weights_seeds": "domain weights over steps, every run",
}


def shrink_png(src: Path, dst: Path, colors: int = 96) -> None:
    """Copy a plot as a palette PNG (a few times smaller than matplotlib's RGBA; flat plot colours survive)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib depends on pillow
        shutil.copyfile(src, dst)
        return
    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(
            dst, optimize=True
        )


def section(
    summary: ComparisonSummary,
    table: str,
    command: str,
    notes: str | None,
    plots: dict[str, str],
    title: str = "The paper's comparison, at laptop scale",
    numbers: str = "benchmarks/results/compare.json",
) -> str:
    m, wall = summary.machine, summary.wall_clock_s
    minutes = wall / 60
    memory_gb = "?" if m.memory_gb is None else m.memory_gb
    lines = [
        f"## {title}",
        "",
        f"`{command}` (written by `benchmarks/bench_compare.py`; all numbers in `{numbers}`).",
        "",
        f"Machine: {m.cpus} CPU cores ({m.processor}), {memory_gb} GB RAM, "
        f"{m.gpu or 'no GPU'}, torch {m.torch}, Ray {m.ray}; "
        f"{summary.concurrency} run(s) at a time. Wall-clock of the whole comparison: "
        f"**{minutes:.1f} min** ({wall:.0f} s)"
        + (
            f", summed over its invocations (it was resumed; the last invocation took "
            f"{summary.wall_clock_s_this_invocation:.1f} s)."
            if summary.resumed
            else "."
        ),
        "",
        "Methods: " + "; ".join(f"`{k}` {v}" for k, v in summary.method_descriptions.items()) + ".",
        "",
        "How the figures are computed: the target is ODM's best average validation perplexity of the same "
        "seed (average = mean of the per-domain perplexities, evaluated every "
        f"{summary.target.eval_every} steps on fixed validation windows); *steps* is the first "
        'evaluated step at or below it ("not reached" if never); *ratio* = steps / ODM\'s own steps to its '
        "best (the paper's \"71% faster\" is a ratio of 0.29). Step time is the median over steps of rank 0's "
        "whole training iteration (ask the mixer, train, send signals, log); *mixer ms/step* is that "
        "iteration minus the training step inside it, paired on the same steps. Peak memory is the Train "
        "worker's plus the policy server's peak RSS. Spreads are sample standard deviations over seeds; "
        "overheads are against the uniform run of the same seed.",
        "",
        table.strip(),
        "",
    ]
    lines += [f"![{title}]({path})" for key, title in PLOTS.items() if (path := plots.get(key))]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--summary", required=True, help="summary.json of a jobs/compare.py run")
    parser.add_argument(
        "--command", required=True, help="the command that produced it (shown in the section)"
    )
    parser.add_argument("--notes", default=None, help="markdown file: the reading of the numbers")
    parser.add_argument(
        "--no-update",
        action="store_true",
        help="print the section instead of writing BENCHMARKS.md",
    )
    parser.add_argument(
        "--section", default="comparison", help="BENCHMARKS.md section to (re)write"
    )
    parser.add_argument(
        "--title", default="The paper's comparison, at laptop scale", help="the section's heading"
    )
    args = parser.parse_args(argv)
    prefix = "compare" if args.section == "comparison" else args.section
    summary_path = Path(args.summary)
    summary = ComparisonSummary.read(summary_path)
    out_dir = summary_path.parent
    table = (out_dir / "table.md").read_text()
    RESULTS.mkdir(parents=True, exist_ok=True)
    plots = {}
    for key in PLOTS:
        src = out_dir / f"{key}.png"
        if src.is_file():
            dst = RESULTS / f"{prefix}_{key}.png"
            shrink_png(src, dst)
            plots[key] = str(dst.relative_to(ROOT))
    numbers = RESULTS / f"{prefix}.json"
    summary = dataclasses.replace(summary, command=args.command)
    numbers.write_text(json.dumps(summary.to_json(), indent=1))
    notes = Path(args.notes).read_text() if args.notes else None
    body = section(
        summary, table, args.command, notes, plots, args.title, str(numbers.relative_to(ROOT))
    )
    if args.no_update:
        print(body)
    else:
        update_section(args.section, body)
        print(
            f"bench_compare: wrote the {args.section} section of BENCHMARKS.md; plots {sorted(plots.values())}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
