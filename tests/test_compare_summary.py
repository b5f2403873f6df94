"""The comparison's typed results (acodm_ray/compare/summary.py, figures.py, records.py): every
committed summary loads and is written back as it was read, each type writes exactly its keys (a
field dropped or renamed fails here), the reading is strict, and the format is versioned."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from acodm_ray.compare import (
    ComparisonSummary,
    HeadlineRow,
    RunSummary,
    SeedSteps,
    Spread,
    SummaryFormatError,
    TopWeight,
    render_table,
)
from acodm_ray.compare.summary import FORMAT, upgrade_format_1

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
COMMITTED = sorted(
    p for p in RESULTS.rglob("*.json") if "headline" in json.loads(p.read_text())
)  # the other JSON files there are other benchmarks' numbers
NAMED = {  # what must be among them, so the filter above cannot drop a summary unseen
    "mixing.json",
    "mixing-decoys.json",
    "mixing-merged.json",
    "mixing-ablations.json",
    "mixing-swamped.json",
    "compare.json",
    "ablation.json",
    "dev-swamped-seed100.json",
    "bench-main-eval.json",
    "study-main-rel.json",
}


def _id(path: Path) -> str:
    return str(path.relative_to(RESULTS))


def _committed(name: str) -> ComparisonSummary:
    return ComparisonSummary.read(RESULTS / name)


def test_the_committed_summaries_are_all_found():
    assert NAMED <= {p.name for p in COMMITTED} and len(COMMITTED) >= 29


@pytest.mark.parametrize("path", COMMITTED, ids=_id)
def test_every_committed_summary_loads_and_is_written_back_as_read(path):
    """Format 1 (no "format" key) read into the types and written as format 2: the same bytes
    but for "format", and for the one summary `upgrade_format_1` fills in (compare.json); a
    format-2 summary (written since) is written back byte for byte."""
    old = json.loads(path.read_text())
    summary = ComparisonSummary.from_json(old, str(path))
    if "format" in old:
        assert old["format"] == FORMAT
        assert json.dumps(summary.to_json(), indent=1) == json.dumps(old, indent=1)
        return
    expected = {"format": FORMAT, **upgrade_format_1(old)}
    assert json.dumps(summary.to_json(), indent=1) == json.dumps(expected, indent=1)
    assert ComparisonSummary.from_json(summary.to_json()) == summary  # format 2 reads back too
    assert (upgrade_format_1(old) == old) == (path.name != "compare.json")


@pytest.mark.parametrize("path", [p for p in COMMITTED if p.with_suffix(".md").is_file()], ids=_id)
def test_committed_study_tables_re_render_from_the_types(path):
    """The studies keep each comparison's table.md next to its summary; the types render it again
    byte for byte (BENCHMARKS.md's tables: test_compare.py)."""
    table = render_table(ComparisonSummary.read(path)).strip()
    assert table.count("\n") > 10 and table in path.with_suffix(".md").read_text()


def test_the_oldest_summary_gets_its_proxy_stage_as_proxies():
    summary = _committed("compare.json")  # one RLlib proxy stage, from before "proxies"
    assert list(summary.proxies) == ["acodm"] and summary.proxy is summary.proxies["acodm"]
    assert (summary.proxy.trainer, summary.proxy.algo, summary.proxy.agent) == ("rl", None, None)
    assert summary.decoys is None and summary.uniform_last_quarter_gain is None  # not recorded then
    assert "of acodm (one policy per seed)" in render_table(summary)


def test_fields_of_the_main_benchmark_read_as_published():
    """README / BENCHMARKS.md quote these: uniform 92.6 ± 1.8 over 5 seeds, AC-ODM's largest weight
    0.16 (latex)."""
    s = _committed("mixing.json")
    assert s.seeds == [0, 1, 2, 3, 4] and s.reference == "odm" and s.static_baseline == "uniform"
    assert s.methods[:3] == ["uniform", "natural", "odm"] and len(s.domains) == 7 and s.decoys == []
    uniform = s.headline["uniform"]
    assert isinstance(uniform, HeadlineRow) and uniform.runs == 5
    ppl = uniform.final_val_ppl["average"]
    assert (round(ppl.mean, 1), round(ppl.std, 1), ppl.n) == (92.6, 1.8, 5)
    assert uniform.step_time_overhead_pct is None  # the baseline has none against itself
    acodm = s.headline["acodm"]
    assert (
        round(acodm.max_final_weight.weight, 2) == 0.16 and acodm.max_final_weight.domain == "latex"
    )
    assert acodm.steps_to_reference.seeds == 5 and set(acodm.steps_to_reference.per_seed) == set(
        s.seeds
    )
    assert acodm.step_time_overhead_pct.n == 5 and acodm.proxy_wall_s.n == 1
    run = s.runs["uniform-seed0"]
    assert isinstance(run, RunSummary) and (run.method, run.seed) == ("uniform", 0)
    assert len(run.eval_steps) == len(run.average_val_ppl) and run.eval_steps[:2] == [40, 80]
    assert run.final_val_ppl["average"] == run.average_val_ppl[-1]
    assert s.proxy.algo == "acodm" and s.proxy.agent.gamma == 0.95
    assert s.machine.cpus == 2 and s.target.tokens_per_step == 4096
    assert s.command.startswith("bash benchmarks/mixing_benchmark.sh main")
    decoys = _committed("mixing-decoys.json")
    assert decoys.decoys == ["noise", "repeated"]
    assert list(decoys.headline["acodm"].decoy_weight.at) == [0.0, 0.1, 0.25, 0.5, 1.0]


# The keys each type writes, spelled out: a field dropped or renamed in code fails here (and a
# committed summary then fails to load: its key is unknown).
KEYS = {
    "summary": [
        "format", "command", "methods", "method_descriptions", "seeds", "domains", "reference",
        "target", "failures", "proxies", "proxy", "static_baseline", "uniform_last_quarter_gain",
        "decoys", "headline", "runs", "name", "config", "quick", "out_dir", "wall_clock_s",
        "wall_clock_s_this_invocation", "resumed", "machine", "concurrency", "files",
    ],
    "headline": [
        "runs", "final_val_ppl", "best_average_val_ppl", "step_ms", "mixer_ms", "mixer_pct_of_step",
        "worker_peak_rss_mb", "peak_rss_mb", "wall_s", "final_weights", "max_final_weight",
        "max_final_weight_per_seed", "steps_to_reference", "steps_to_uniform_final",
        "decoy_weight", "step_time_overhead_pct", "memory_overhead_pct",
        "worker_memory_overhead_pct", "proxy_wall_s",
    ],
    "run": [
        "method", "seed", "run_dir", "final_val_ppl", "best_average_val_ppl", "eval_steps",
        "average_val_ppl", "step_ms_median", "mixer_ms_median", "worker_peak_rss_mb",
        "server_peak_rss_mb", "run_seconds", "wall_s", "steps_to_reference", "final_weights",
        "agent",
    ],
    "proxy": [
        "model", "steps", "trainer", "algo", "mixer", "rl_iterations", "env_steps_per_iteration",
        "agent", "reward", "per_seed", "runs", "wall_s",
    ],
    "target": [
        "model", "steps", "seq_len", "micro_batch_size", "grad_accum", "tokens_per_step",
        "eval_every", "eval_batches", "num_workers", "cpus_per_worker", "state_layers",
    ],
    "agent": [
        "actor_hidden", "actor_layers", "critic_hidden", "critic_layers", "gamma",
        "warmup_fraction",
    ],
    "proxy_run": ["policy", "wall_s", "run_dir"],
    "machine": ["cpus", "platform", "processor", "torch", "gpu", "ray", "memory_gb"],
    "spread": ["mean", "std", "min", "max", "n"],
    "steps_to": ["seeds", "reached", "steps", "ratio", "per_seed"],
    "seed_steps": ["target", "steps", "reference_steps", "ratio"],
    "decoy_weight": ["at", "mean"],
    "top_weight": ["domain", "weight"],
}  # fmt: skip


def test_each_type_writes_exactly_its_keys():
    s = _committed("mixing-decoys.json")  # every optional figure present
    row = s.headline["acodm"]
    written = {
        "summary": s.to_json(),
        "headline": row.to_json(),
        "run": s.runs["acodm-seed0"].to_json(),
        "proxy": s.proxy.to_json(),
        "target": s.target.to_json(),
        "agent": s.proxy.agent.to_json(),
        "proxy_run": s.proxy.runs[0].to_json(),
        "machine": s.machine.to_json(),
        "spread": row.step_ms.to_json(),
        "steps_to": row.steps_to_reference.to_json(),
        "seed_steps": row.steps_to_reference.per_seed[0].to_json(),
        "decoy_weight": row.decoy_weight.to_json(),
        "top_weight": row.max_final_weight.to_json(),
    }
    assert {name: list(data) for name, data in written.items()} == KEYS
    assert list(written["steps_to"]["per_seed"]) == ["0", "1", "2"]  # seeds as JSON keys
    assert list(written["decoy_weight"]["at"]) == ["0", "0.1", "0.25", "0.5", "1"]


def test_figures_absent_for_a_method_are_not_written():
    """The baseline has no overheads, a non-proxy method no proxy wall-clock, a comparison without
    ODM no steps to its best: those keys are absent, as in every summary before the types."""
    s = _committed("mixing.json")
    uniform = s.headline["uniform"].to_json()
    assert "step_time_overhead_pct" not in uniform and "proxy_wall_s" not in uniform
    assert "decoy_weight" not in uniform and "steps_to_reference" in uniform
    row = dataclasses.replace(s.headline["odm"], steps_to_reference=None)
    assert "steps_to_reference" not in row.to_json()
    assert HeadlineRow.from_json(row.to_json()) == row


def test_a_method_with_no_finished_run_is_runs_0_on_disk_and_none_in_the_types():
    data = _committed("mixing-merged.json").to_json()
    data["headline"]["odm"] = {"runs": 0}
    summary = ComparisonSummary.from_json(data)
    assert summary.headline["odm"] is None and summary.to_json()["headline"]["odm"] == {"runs": 0}
    assert "| odm | failed |" in render_table(summary)


def _mixing() -> dict:
    return json.loads((RESULTS / "mixing.json").read_text())


def test_reading_refuses_unknown_and_missing_keys_naming_where():
    data = _mixing()
    data["headline"]["odm"]["step_msec"] = data["headline"]["odm"].pop("step_ms")
    with pytest.raises(
        SummaryFormatError, match=r"summary\.headline\.odm: unknown key\(s\) \['step_msec'\]"
    ):
        ComparisonSummary.from_json(data)
    data = _mixing()
    del data["runs"]["odm-seed3"]["eval_steps"]
    with pytest.raises(
        SummaryFormatError, match=r"summary\.runs\.odm-seed3: missing key\(s\) \['eval_steps'\]"
    ):
        ComparisonSummary.from_json(data)


def test_reading_refuses_wrong_types_and_never_converts():
    data = _mixing()
    data["headline"]["odm"]["step_ms"]["n"] = "5"
    with pytest.raises(
        SummaryFormatError, match=r"summary\.headline\.odm\.step_ms\.n: expected int"
    ):
        ComparisonSummary.from_json(data)
    data = _mixing()
    data["runs"]["odm-seed0"]["final_val_ppl"]["average"] = True
    with pytest.raises(SummaryFormatError, match=r"final_val_ppl\.average: expected float"):
        ComparisonSummary.from_json(data)
    data = _mixing()
    data["headline"]["odm"]["max_final_weight_per_seed"]["first"] = {"domain": "a", "weight": 1.0}
    with pytest.raises(SummaryFormatError, match="key 'first' is not a int"):
        ComparisonSummary.from_json(data)
    # an int where a float is due stays an int: the summary is written back with the bytes it had
    spread = Spread.from_json({"mean": 3, "std": 0.0, "min": 3, "max": 3, "n": 1})
    assert (
        spread.mean == 3
        and isinstance(spread.mean, int)
        and json.dumps(spread.to_json()) == ('{"mean": 3, "std": 0.0, "min": 3, "max": 3, "n": 1}')
    )


def test_the_format_is_versioned():
    written = _committed("mixing.json").to_json()
    assert written["format"] == FORMAT == 2 and list(written)[0] == "format"
    assert ComparisonSummary.from_json({**written, "format": 1}) == ComparisonSummary.from_json(
        written
    )
    with pytest.raises(SummaryFormatError, match="format 3; this acodm-ray reads formats 1 to 2"):
        ComparisonSummary.from_json({**written, "format": 3})


def test_per_seed_maps_have_int_keys():
    s = _committed("mixing-swamped.json")
    row = s.headline["acodm-eval"]
    assert set(row.max_final_weight_per_seed) == set(row.steps_to_reference.per_seed) == {0, 1, 2}
    assert isinstance(row.steps_to_reference.per_seed[0], SeedSteps)
    assert all(isinstance(w, TopWeight) for w in row.max_final_weight_per_seed.values())
