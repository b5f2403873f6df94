"""The results at a glance, from the committed comparison summaries: one row per mixing-benchmark
setting, the default AC-ODM and the best method against uniform and ODM, paired seed by seed.

BENCHMARKS.md opens with this table and the README's first screen shows the same one; both are
written from here (`python benchmarks/results_table.py`, after `benchmarks/bench_compare.py` has
committed a setting's summary), and tests/test_results_table.py checks that the committed copies are
what the summaries give.

A cell "x ± s (w/n)" is the mean ± sample std over the n seeds of the paired difference of final
average validation perplexity (method − other, the same seed; negative is better), and w the seeds
the method is better on. A setting's methods come from its own comparison and from the methods run
on its config and seeds afterwards (benchmarks/paired.py: target runs are deterministic given config
and seed, so they pair with the earlier runs). A setting whose summary is not committed yet says so.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.compare.stats import mean_spread  # noqa: E402
from acodm_ray.compare.summary import ComparisonSummary  # noqa: E402
from benchmarks.paired import finals  # noqa: E402
from benchmarks.report import update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DEFAULT = "acodm"
KNOWN_ANSWER = "file"  # the static mix with nothing on the decoys (benchmarks/weights/)
STUDY = "eval_reward_study/"
# comparisons whose `acodm` and eval-score variants ran under an earlier default, shown under a name
# that says what they ran: with named targets `acodm` took the `total` reward before the front door
# (`acodm-total` now) and the eval-score variants the fixed temperature, no window and the floor
# 0.01; then, before the floor rule, `acodm` kept the floor 0.01 and so did the eval-score variants
# run beside it (their names now run without it); and before the lcb objective every one of them
# followed the softmax of its values (`acodm-softmax` now)
FIXED = "fixed temperature, floor 0.01"
FLOOR = "floor 0.01"
SOFTMAX = "softmax"
SOFTMAX_FLOOR = f"{SOFTMAX}, {FLOOR}"


def _ran_with(label: str, methods: tuple[str, ...]) -> dict[str, str]:
    return {m: f"{m}, {label}" for m in methods}


EARLIER_DEFAULT = {
    "mixing-decoys.json": {DEFAULT: "acodm-total"},
    "mixing-swamped.json": {
        DEFAULT: "acodm-total",
        **_ran_with(FIXED, ("acodm-eval", "acodm-evalppl")),
    },
    **{
        f"{STUDY}bench-{setting}-{variant}.json": _ran_with(FIXED, (f"acodm-{variant}",))
        for setting in ("main", "merged", "decoys")
        for variant in ("eval", "evalppl")
    },
    "mixing-swamped-named.json": {
        DEFAULT: f"acodm-softmax, {FLOOR}",
        **_ran_with(FLOOR, ("acodm-projection",)),
        **_ran_with(SOFTMAX_FLOOR, ("acodm-fixedtemp", "acodm-nowindow", "acodm-online")),
    },
    "mixing-junk.json": {
        DEFAULT: f"acodm-softmax, {FLOOR}",
        **_ran_with(FLOOR, ("acodm-projection",)),
        **_ran_with(SOFTMAX_FLOOR, ("acodm-online",)),
    },
    **{
        f"mixing-{setting}-nofloor.json": {
            DEFAULT: "acodm-softmax",
            **_ran_with(SOFTMAX, ("acodm-online",)),
        }
        for setting in ("swamped", "junk")
    },
    "mixing-decoys-named.json": {DEFAULT: "acodm-softmax"},
    # switches on the softmax default (acodm-proportional replaces the objective, so it ran as named)
    **{
        f"mixing-{setting}-variants.json": _ran_with(SOFTMAX, ("acodm-fair", "acodm-adam"))
        for setting in ("swamped", "junk")
    },
}
Finals = dict[str, dict[int, float]]  # method -> seed -> final average validation perplexity


# what a method that may show up in the table is, in a line each (docs/method.md has them in full)
GLOSS = {
    "odm": "ODM, the online bandit baseline",
    "sac": "RLlib's SAC on AC-ODM's environment, its policy transferred like AC-ODM's",
    "acodm-reference": "AC-ODM as the published code runs it",
    "acodm-total": f"`{DEFAULT}` with the `total` reward where targets are named",
    f"acodm-eval, {FIXED}": "AC-ODM rewarded by agreement with the evaluated domains' gradient "
    "(the `eval` score) at the fixed temperature, with the floor 0.01, before the named-targets rule",
    f"acodm-evalppl, {FIXED}": "AC-ODM rewarded by agreement with the evaluated domains' gradient "
    "weighted by each domain's perplexity, at the fixed temperature, with the floor 0.01, before "
    "the named-targets rule",
    "acodm-projection": f"`{DEFAULT}` with its actor fitted to the softmax of the critic's values "
    "(a variant, docs/method.md)",
    f"acodm-projection, {FLOOR}": "that variant run before the floor rule, with the floor 0.01",
    "acodm-floor": f"`{DEFAULT}` with the weight floor 0.01 its `eval` reward otherwise drops",
    "acodm-softmax": f"`{DEFAULT}` with its actor following the softmax of the critic's values "
    "at the evidence temperature instead of weights proportional to their lower confidence "
    "bounds: the named-targets default before the lcb objective",
    f"acodm-softmax, {FLOOR}": "the named-targets default before the floor rule and the lcb "
    "objective: the softmax of the critic's values, with the floor 0.01",
}


@dataclass(frozen=True)
class Setting:
    """A benchmark setting: its name in the table, its comparison's summary, and the summaries of
    methods run on its config and seeds afterwards (skipped while not committed)."""

    name: str
    summary: str  # under benchmarks/results/
    later: tuple[str, ...] = ()


SETTINGS = [
    Setting(
        "bundled corpus: 7 domains",
        "mixing.json",
        (f"{STUDY}bench-main-eval.json", f"{STUDY}bench-main-evalppl.json"),
    ),
    Setting(
        "merged: the same text as 4 domains",
        "mixing-merged.json",
        (f"{STUDY}bench-merged-eval.json", f"{STUDY}bench-merged-evalppl.json"),
    ),
    Setting(
        "decoys: 7 domains + 2 decoys",
        "mixing-decoys.json",
        (
            *(f"{STUDY}bench-decoys-{m}.json" for m in ("eval", "evalppl", "realonly")),
            "mixing-decoys-named.json",
            "mixing-decoys-lcb.json",
        ),
    ),
    Setting(
        "swamped: 7 domains + 7 decoys",
        "mixing-swamped.json",
        (
            "mixing-swamped-named.json",
            "mixing-swamped-nofloor.json",
            "mixing-swamped-lcb.json",
            "mixing-swamped-variants.json",
        ),
    ),
    Setting(
        "junk: 7 domains + 7 junk domains",
        "mixing-junk.json",
        ("mixing-junk-nofloor.json", "mixing-junk-lcb.json", "mixing-junk-variants.json"),
    ),
]


def setting_finals(setting: Setting) -> Finals | None:
    """Every method's finals on a setting, None while its comparison is not committed."""
    if not (RESULTS / setting.summary).is_file():
        return None
    out: Finals = {}
    for name in (setting.summary, *setting.later):
        if not (RESULTS / name).is_file():
            continue
        summary = ComparisonSummary.read(RESULTS / name)
        for method in summary.methods:
            shown = EARLIER_DEFAULT.get(name, {}).get(method, method)
            out.setdefault(shown, finals(summary, method))  # the setting's own runs come first
    return out


def paired_finals(mine: dict[int, float], theirs: dict[int, float]) -> tuple[str, int, int]:
    """("mean ± std" of mine − theirs over their common seeds, seeds mine wins, seeds)."""
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        return "–", 0, 0
    diff = mean_spread([mine[s] - theirs[s] for s in seeds])
    return f"{diff.mean:+.2f} ± {diff.std:.2f}", sum(mine[s] < theirs[s] for s in seeds), len(seeds)


def paired(summary: ComparisonSummary, method: str, other: str) -> tuple[str, int, int]:
    """paired_finals of two methods of one summary."""
    return paired_finals(finals(summary, method), finals(summary, other))


def best_method(runs: Finals) -> str:
    """The method with the lowest mean final perplexity, uniform included, the known answer not:
    where nothing beats uniform, the table says so."""
    mixers = {m: f for m, f in runs.items() if f and m != KNOWN_ANSWER}
    return min(mixers, key=lambda m: sum(mixers[m].values()) / len(mixers[m]))


def versus(runs: Finals, method: str, other: str) -> str:
    """The paired cell of method − other, or why there is none."""
    if method not in runs:
        return "not run"
    if other not in runs or method == other:
        return "–"
    cell, wins, seeds = paired_finals(runs[method], runs[other])
    return f"{cell} ({wins}/{seeds})" if seeds else cell


def row(setting: Setting) -> list[str]:
    """One setting's cells (header order)."""
    runs = setting_finals(setting)
    if runs is None:
        return [setting.name, "not run yet", *["–"] * 6]
    best = best_method(runs)
    seeds = len(runs["uniform"])
    return [
        setting.name,
        str(seeds),
        versus(runs, DEFAULT, "uniform"),
        versus(runs, DEFAULT, "odm"),
        f"`{best}`",
        versus(runs, best, "uniform"),
        versus(runs, best, "odm"),
        versus(runs, KNOWN_ANSWER, "uniform") if KNOWN_ANSWER in runs else "none known",
    ]


HEADER = [
    "setting",
    "seeds",
    f"`{DEFAULT}` − uniform",
    f"`{DEFAULT}` − ODM",
    "best method",
    "best − uniform",
    "best − ODM",
    "known answer − uniform",
]


def legend(rows: list[list[str]]) -> str:
    """How to read the cells, and what each method named in them is."""
    named = {m for r in rows for m in GLOSS if f"`{m}`" in r[4]}
    waiting = [r[0].split(":")[0] for r in rows if r[2] == "not run"]
    lines = [
        "Final average validation perplexity, paired seed by seed: method − other, mean ± std over "
        "the seeds (seeds the method is better on); negative is better. The best method has the "
        "lowest mean of the methods run on the setting; the known answer, a static mix with "
        "nothing on the decoys, shows how much the mix can matter there. "
        f"`{DEFAULT}` is the default AC-ODM (proxy mode)."
    ]
    if waiting:
        lines.append(
            f"With the evaluated domains named, as in {' and '.join(waiting)}, `{DEFAULT}` takes "
            "the `eval` reward, and that default has not run on these seeds yet."
        )
    lines += [f"`{m}`: {GLOSS[m]}." for m in GLOSS if m in named]
    return " ".join(lines)


def markdown() -> str:
    """The table and its legend."""
    rows = [row(s) for s in SETTINGS]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([*lines, "", legend(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    text = markdown()
    print(text)
    update_section("results-summary", text)
    update_section("results-summary", text, README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
