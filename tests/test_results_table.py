"""The results table on the README's first screen and at the top of BENCHMARKS.md is what the
committed comparison summaries give (benchmarks/results_table.py writes both)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import results_table

ROOT = Path(__file__).resolve().parents[1]


def section(path: Path) -> str:
    match = re.search(
        r"<!-- BEGIN results-summary -->\n(.*?)\n<!-- END results-summary -->",
        path.read_text(),
        re.S,
    )
    assert match, f"{path.name} has no results-summary section"
    return match.group(1).strip()


@pytest.mark.parametrize("document", ["README.md", "BENCHMARKS.md"])
def test_the_committed_results_table_is_what_the_summaries_give(document):
    assert section(ROOT / document) == results_table.markdown()


def test_paired_differences_by_hand():
    """acodm − uniform on the swamped setting, from the committed per-seed finals."""
    summary = results_table.ComparisonSummary.read(results_table.RESULTS / "mixing-swamped.json")
    mine, uni = results_table.finals(summary, "acodm"), results_table.finals(summary, "uniform")
    diffs = [mine[s] - uni[s] for s in sorted(mine)]
    mean = sum(diffs) / len(diffs)
    std = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5
    cell, wins, n = results_table.paired(summary, "acodm", "uniform")
    assert (
        cell == f"{mean:+.2f} ± {std:.2f}" and n == len(diffs) and wins == sum(d < 0 for d in diffs)
    )


def test_generated_sections_of_benchmarks_md_do_not_nest():
    """benchmarks/report.update_section replaces everything between a section's BEGIN and END
    marker: a section opened inside another would be wiped when the outer one is written again."""
    open_name = None
    text = (ROOT / "BENCHMARKS.md").read_text()
    for kind, name in re.findall(r"<!-- (BEGIN|END) ([\w-]+) -->", text):
        if kind == "BEGIN":
            assert open_name is None, f"section {name!r} begins inside section {open_name!r}"
            open_name = name
        else:
            assert name == open_name, f"END {name!r} closes section {open_name!r}"
            open_name = None
    assert open_name is None, f"section {open_name!r} never ends"
