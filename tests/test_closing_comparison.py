"""The proxy stage's closing comparison (acodm_ray/rollout.py, policies/run.py): with named
targets the learned mix is rolled out next to ODM and uniform from the same seed, and the summary
prints each method's perplexity on the named domains and weight on the others, with a verdict.
Hand-computed values, tiny inputs, no Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acodm_ray import rollout
from acodm_ray.mixers.static import StaticMixer
from policies.run import closing_lines, comparison_lines, mix_verdict
from tests.conftest import synthetic_corpus, tiny_config


def test_decoy_weight_sums_the_decoys_and_averages_the_steps():
    weights = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    # step 1: a 0.5 + c 0.2 = 0.7; step 2: 0.1 + 0.3 = 0.4; mean 0.55
    assert rollout.decoy_weight(weights, ["a", "b", "c"], ["c", "a"]) == pytest.approx(0.55)
    assert rollout.decoy_weight(weights, ["a", "b", "c"], ["b"]) == pytest.approx(0.45)


def test_decoy_domains_are_the_unnamed_ones_and_none_without_named_targets():
    assert rollout.decoy_domains(["a", "b", "c", "d"], ["b", "d"]) == ["a", "c"]
    assert rollout.decoy_domains(["a", "b"], []) == []


def test_mix_comparison_reads_each_run():
    runs = {
        "policy": {"weights": np.array([[0.8, 0.2], [0.6, 0.4]]), "val_ppl": {"average": 10.0}},
        "uniform": {"weights": np.full((2, 2), 0.5), "val_ppl": {"a": 12.0, "average": 12.5}},
    }
    assert rollout.mix_comparison(runs, ["a", "junk"], ["junk"], ["a"]) == {
        "named": ["a"],
        "decoys": ["junk"],
        "methods": {
            "policy": {"val_ppl": 10.0, "decoy_weight": pytest.approx(0.3)},
            "uniform": {"val_ppl": 12.5, "decoy_weight": 0.5},
        },
    }


METHODS = {
    "AC-ODM policy": {"val_ppl": 95.04, "decoy_weight": 0.212},
    "ODM": {"val_ppl": 101.2, "decoy_weight": 0.47},
    "uniform": {"val_ppl": 100.3, "decoy_weight": 0.5},
}


def test_the_verdict_says_where_the_learned_mix_stands_against_each_method():
    # 95.04 - 101.2 = -6.16 -> -6.2; 95.04 - 100.3 = -5.26 -> -5.3
    assert mix_verdict(METHODS, "AC-ODM policy") == (
        "verdict: the AC-ODM policy is ahead of ODM (-6.2 perplexity) and ahead of uniform "
        "(-5.3 perplexity) on the named domains, with 0.21 of its weight on the others against "
        "ODM's 0.47 and uniform's 0.50 (one seed)."
    )
    # 100.34 - 100.3 = +0.04: level to the printed decimal; 100.34 - 99.0 = +1.34 -> behind
    mixed = {**METHODS, "AC-ODM policy": {"val_ppl": 100.34, "decoy_weight": 0.5}}
    mixed["ODM"] = {"val_ppl": 99.0, "decoy_weight": 0.4}
    assert mix_verdict(mixed, "AC-ODM policy").startswith(
        "verdict: the AC-ODM policy is behind ODM (+1.3 perplexity) and level with uniform "
        "(+0.0 perplexity) on the named domains, with 0.50 of its weight"
    )


def test_the_closing_table_has_a_row_per_method_then_the_verdict():
    comparison = {"learned": "AC-ODM policy", "named": ["a"] * 7, "decoys": ["x"] * 7}
    lines = comparison_lines({**comparison, "methods": METHODS})
    head = (
        "  method         avg val ppl on the 7 named domains"
        "  weight on the 7 others (mean over the run)"
    )
    assert lines[1] == head
    assert all(len(line) == len(head) for line in lines[2:5])  # right-aligned under their heads
    rows = [line.split() for line in lines[2:5]]
    assert rows == [
        ["AC-ODM", "policy", "95.0", "0.21"],
        ["ODM", "101.2", "0.47"],
        ["uniform", "100.3", "0.50"],
    ]
    assert lines[5] == mix_verdict(METHODS, "AC-ODM policy") and len(lines) == 6


def test_closing_lines_print_the_table_with_decoys_and_the_odm_line_without():
    rollout_without = {
        "policy_mean_weights": {"a": 0.6, "x": 0.4},
        "policy_val_ppl": {"average": 9.0},
        "odm_val_ppl": {"average": 10.0},
        "mean_tv_distance_to_odm": 0.1,
        "plot": "p.png",
    }
    summary = {"iterations": 2, "algo": "acodm", "rollout": rollout_without}
    lines, _ = closing_lines(summary, Path("run"), "c.yaml")
    assert any("is 9.0, better than ODM's 10.0" in line for line in lines)
    assert not any(line.startswith("verdict:") for line in lines)
    comparison = {"learned": "AC-ODM policy", "named": ["a"], "decoys": ["x"], "methods": METHODS}
    summary["rollout"] = {**rollout_without, "comparison": comparison}
    lines, _ = closing_lines(summary, Path("run"), "c.yaml")
    assert lines[2:8] == comparison_lines(comparison)
    assert not any("better than ODM's" in line for line in lines)


@pytest.fixture
def three_domains(monkeypatch):
    """compare_with_odm on a synthetic 3-domain corpus, the exported policy replaced by a fixed
    mix that puts 0.1 on the decoy d2."""
    corpus = synthetic_corpus(num_domains=3)
    monkeypatch.setattr(rollout, "load_tokenized", lambda cfg: (corpus, None))
    fixed = np.array([0.5, 0.4, 0.1])
    monkeypatch.setattr(
        rollout, "ActorMixer", lambda path, domains, dim: StaticMixer(domains, fixed, "policy")
    )
    return corpus


def test_compare_with_odm_rolls_out_uniform_too_when_decoys_are_named(three_domains, tmp_path):
    cfg = tiny_config(train={"steps": 3, "eval_domains": "[d0,d1]"})
    out = rollout.compare_with_odm("unused", cfg, tmp_path, "AC-ODM policy", ["d2"])
    comparison = out["comparison"]
    assert comparison["learned"] == "AC-ODM policy" and comparison["named"] == ["d0", "d1"]
    methods = comparison["methods"]
    assert list(methods) == ["AC-ODM policy", "ODM", "uniform"]
    assert methods["AC-ODM policy"]["decoy_weight"] == pytest.approx(0.1)
    assert methods["uniform"]["decoy_weight"] == pytest.approx(1 / 3)
    assert methods["AC-ODM policy"]["val_ppl"] == out["policy_val_ppl"]["average"]
    assert methods["ODM"]["val_ppl"] == out["odm_val_ppl"]["average"]
    plain = rollout.compare_with_odm("unused", cfg, tmp_path, "AC-ODM policy")
    assert "comparison" not in plain and set(plain) == set(out) - {"comparison"}
