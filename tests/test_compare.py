"""The method comparison (jobs/compare.py, acodm_ray/compare/, policies/compare_proxy.py): the
headline computations on hand-made curves, the config plumbing, and the quick comparison on
configs/tiny.yaml end to end (every method trains, every output is written, the numbers are finite)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from acodm_ray.compare import (
    DEFAULT_METHODS,
    METHODS,
    CompareError,
    ComparisonSummary,
    HeadlineRow,
    SeedSteps,
    Spread,
    StepsTo,
    TargetSetup,
    TopWeight,
    best_point,
    headline_steps,
    load_compare_config,
    mean_spread,
    overhead_pct,
    parse_methods,
    plan,
    proxy_config,
    render_table,
    steps_to_reach,
    steps_to_reference,
    target_config,
)
from acodm_ray.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
import compare as compare_job  # noqa: E402

STEPS = [10, 20, 30, 40]


# ---------------------------------------------------------------------- headline computations


def test_steps_to_reach_is_the_first_step_at_or_below_the_target():
    values = [100.0, 80.0, 60.0, 65.0]
    assert steps_to_reach(STEPS, values, 80.0) == 20  # equality counts
    assert steps_to_reach(STEPS, values, 79.9) == 30
    assert steps_to_reach(STEPS, values, 60.0) == 30
    assert steps_to_reach(STEPS, values, 59.9) is None  # never gets there
    assert (
        steps_to_reach(STEPS, [float("nan"), 70.0, None, 50.0], 60.0) == 40
    )  # non-finite values skipped
    assert best_point(STEPS, values) == (30, 60.0)
    assert best_point(STEPS, [5.0, 3.0, 3.0, 4.0]) == (20, 3.0)  # first step on ties
    assert best_point(STEPS, [float("nan")] * 4) is None


def test_steps_to_reference_per_seed_ratio_and_not_reached():
    curves = {
        # seed 0: ODM's best is 60 at step 30; seed 1: 50 at step 40
        "odm": {0: (STEPS, [100.0, 80.0, 60.0, 65.0]), 1: (STEPS, [90.0, 70.0, 55.0, 50.0])},
        "fast": {0: (STEPS, [90.0, 60.0, 50.0, 45.0]), 1: (STEPS, [60.0, 50.0, 45.0, 40.0])},
        "slow": {0: (STEPS, [120.0, 100.0, 70.0, 61.0]), 1: (STEPS, [80.0, 70.0, 60.0, 50.0])},
    }
    res = steps_to_reference(curves, "odm")
    assert res["odm"][0] == SeedSteps(target=60.0, steps=30, reference_steps=30, ratio=1.0)
    assert res["odm"][1].steps == 40 and res["odm"][1].ratio == 1.0
    assert res["fast"][0].steps == 20 and res["fast"][0].ratio == pytest.approx(2 / 3)
    assert res["fast"][1].steps == 20 and res["fast"][1].ratio == pytest.approx(0.5)
    assert res["slow"][0].steps is None and res["slow"][0].ratio is None  # 61 > 60: not reached
    assert res["slow"][1].steps == 40 and res["slow"][1].ratio == 1.0

    fast = headline_steps(res["fast"])
    assert (fast.seeds, fast.reached) == (2, 2)
    assert fast.steps.mean == 20 and fast.steps.std == 0
    assert fast.ratio.mean == pytest.approx(7 / 12)
    assert fast.ratio.std == pytest.approx(np.std([2 / 3, 0.5], ddof=1))
    assert fast.per_seed == res["fast"]  # by seed (int), as the summary keeps it
    slow = headline_steps(res["slow"])
    assert (slow.seeds, slow.reached) == (2, 1)  # mean over the seeds that reached it
    assert slow.steps.mean == 40 and slow.ratio.mean == 1.0 and slow.ratio.n == 1

    never = headline_steps(
        steps_to_reference({"odm": curves["odm"], "x": {0: (STEPS, [200.0] * 4)}})["x"]
    )
    assert never.reached == 0 and never.steps is None and never.ratio is None
    with pytest.raises(CompareError, match="reference"):
        steps_to_reference({"fast": curves["fast"]}, "odm")


def test_mean_spread_and_overhead():
    s = mean_spread([1.0, 2.0, 3.0, None, float("nan")])
    assert s == Spread(mean=2.0, std=pytest.approx(1.0), min=1.0, max=3.0, n=3)
    assert mean_spread([5.0]).std == 0.0
    assert mean_spread([None, float("inf")]) is None
    # per seed against the same seed's baseline: +10% and +30%
    o = overhead_pct({0: 110.0, 1: 130.0, 2: None}, {0: 100.0, 1: 100.0, 2: 100.0})
    assert o.mean == pytest.approx(20.0) and o.n == 2
    assert overhead_pct({0: 1.0}, {1: 1.0}) is None


def _summary_for_table(reached: int) -> ComparisonSummary:
    def stat(x):
        return Spread(mean=x, std=0.5, min=x, max=x, n=2)

    per = StepsTo(
        seeds=2,
        reached=reached,
        steps=stat(30.0) if reached else None,
        ratio=stat(1.0) if reached else None,
        per_seed={},
    )
    entry = HeadlineRow(
        runs=2,
        final_val_ppl={"average": stat(50.0), "a": stat(40.0), "b": stat(60.0)},
        best_average_val_ppl=stat(49.0),
        step_ms=stat(100.0),
        mixer_ms=None,
        mixer_pct_of_step=None,
        worker_peak_rss_mb=stat(800.0),
        peak_rss_mb=stat(900.0),
        wall_s=stat(60.0),
        final_weights={"a": 0.97, "b": 0.03},
        max_final_weight=TopWeight(domain="a", weight=0.97),
        max_final_weight_per_seed={},
        steps_to_reference=per,
        step_time_overhead_pct=stat(2.0),
        memory_overhead_pct=stat(-1.0),
    )
    target = TargetSetup(
        model={"num_layers": 2, "hidden_size": 32},
        steps=40,
        seq_len=32,
        micro_batch_size=2,
        grad_accum=8,
        tokens_per_step=512,
        eval_every=10,
        eval_batches=2,
        num_workers=1,
        cpus_per_worker=1.0,
        state_layers=2,
    )
    uniform = dataclasses.replace(entry, final_weights={"a": 0.5, "b": 0.5})
    return ComparisonSummary(
        methods=["uniform", "acodm"],
        method_descriptions={},
        seeds=[0, 1],
        domains=["a", "b"],
        reference="odm",
        target=target,
        failures={},
        static_baseline="uniform",
        headline={"uniform": uniform, "acodm": entry},
        runs={},
    )


def test_table_says_not_reached_and_marks_the_baseline():
    text = render_table(_summary_for_table(reached=0))
    row = next(line for line in text.splitlines() if line.startswith("| acodm |"))
    assert (
        "not reached (0/2)" in row
        and "50.0 ± 0.5" in row
        and "+2.0% ± 0.5" in row
        and "a 0.97" in row
    )
    base = next(line for line in text.splitlines() if line.startswith("| uniform |"))
    assert "(baseline)" in base and "all equal" in base
    assert "reached 1/2" in render_table(_summary_for_table(reached=1))


# ---------------------------------------------------------------------- configuration


def test_unknown_methods_are_refused_with_the_valid_list(capsys):
    assert parse_methods("uniform, odm,uniform,acodm-online") == ["uniform", "odm", "acodm-online"]
    with pytest.raises(
        CompareError,
        match="valid methods are: uniform, natural, odm, odm-exp3, alignment, alignment-proxy, acodm, acodm-online",
    ):
        parse_methods("uniform,doremi")
    with pytest.raises(CompareError, match="no method"):
        parse_methods(" , ")
    rc = compare_job.main(["--config", "configs/tiny.yaml", "--quick", "--methods", "odm,doremi"])
    err = capsys.readouterr().err
    assert rc == 2 and "doremi" in err and all(m in err for m in METHODS)
    with pytest.raises(ConfigError, match="doremi"):
        load_compare_config("configs/tiny.yaml", ["compare.methods=[odm, doremi]"])


def test_quick_overrides_and_proxy_state_size(tmp_path):
    full = load_compare_config("configs/demo.yaml")
    quick = load_compare_config("configs/demo.yaml", quick=True)
    assert full.compare.seeds == 3 and quick.compare.seeds == 1
    assert (
        load_compare_config("configs/demo.yaml", ["compare.seeds=2"], quick=True).compare.seeds == 2
    )  # --set wins
    for cfg in (full, quick):
        tgt, prx = target_config(cfg, "odm", 1), proxy_config(cfg, 1)
        assert prx.model.hidden_size < tgt.model.hidden_size, (
            "the proxy must be smaller than the target"
        )
        assert (
            prx.signals.state_layers == tgt.signals.state_layers
        )  # same state size: the policy transfers
        assert tgt.train.seed == prx.train.seed == 1 and prx.rl.algo == "acodm"
    assert target_config(full, "acodm-online", 0).target.online_acodm
    assert target_config(full, "natural", 0).mixer.name == "natural"
    assert target_config(full, "acodm", 0, policy="/p").target.policy == "/p"
    # every (method, seed) gets one target run; the AC-ODM runs wait for their seed's proxy stage
    specs = plan(full, tmp_path)
    assert len([s for s in specs if s.kind == "target"]) == 15
    assert {s.depends for s in specs if s.method == "acodm" and s.kind == "target"} == {
        "proxy-seed0",
        "proxy-seed1",
        "proxy-seed2",
    }
    with pytest.raises(ConfigError, match="proxy of acodm has 1 layer"):
        load_compare_config("configs/demo.yaml", ["compare.proxy.model.num_layers=1"])
    with pytest.raises(ConfigError, match="stepz"):
        load_compare_config("configs/demo.yaml", ["compare.target.train.stepz=3"])
    # your own static recipe: method "file" reads mixer.weights_file, and refuses to plan without one
    mine = load_compare_config(
        "configs/demo.yaml", ["compare.methods=[uniform, file]", "mixer.weights_file=w.yaml"]
    )
    assert (
        target_config(mine, "file", 0).mixer.name,
        target_config(mine, "file", 0).mixer.weights_file,
    ) == ("file", "w.yaml")
    with pytest.raises(ConfigError, match="'file' but mixer.weights_file is not set"):
        load_compare_config("configs/demo.yaml", ["compare.methods=[uniform, file]"])


# ---------------------------------------------------------------------- end to end


def _all_numbers(obj, path="summary"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _all_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _all_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        yield path, obj


@pytest.mark.slow
def test_quick_comparison_end_to_end(readme_quick_comparison):
    # the README's smoke comparison (conftest): the paper's five, and one of each other kind of method:
    # an online mixer fed by the alignment scores, a mixer schedule replayed from the proxy, RLlib PPO
    # transferred (kind "mlp"), an AC-ODM variant learned on a named proxy size
    _, out, methods = readme_quick_comparison
    assert (
        methods[: len(DEFAULT_METHODS)] == DEFAULT_METHODS
        and len(methods) == len(DEFAULT_METHODS) + 4
    )
    for name in (
        "summary.json",
        "table.md",
        "val_ppl.png",
        "val_ppl_domains.png",
        "weights.png",
        "config.yaml",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    written = json.loads((out / "summary.json").read_text())
    summary = ComparisonSummary.from_json(written)  # every key read, none unknown
    assert written["format"] == 2 and summary.to_json() == written
    assert summary.methods == methods and summary.seeds == [0] and not summary.failures
    table = (out / "table.md").read_text()
    for method in methods:
        run = out / "runs" / f"{method}-seed0"
        run_summary = json.loads((run / "summary.json").read_text())
        assert run_summary["steps"] == 6, method
        h = summary.headline[method]
        assert h.runs == 1
        assert (
            math.isfinite(h.final_val_ppl["average"].mean) and h.final_val_ppl["average"].mean > 1
        )
        assert math.isfinite(h.step_ms.mean) and h.peak_rss_mb.mean > 0
        assert h.steps_to_reference.seeds == 1
        assert summary.runs[f"{method}-seed0"].run_dir == str(run)
        assert f"| {method} |" in table
    # the proxy mode policy came from this comparison's own proxy stage, with the target's state size
    policy = Path(summary.proxy.runs[0].policy)
    assert policy.is_dir() and policy.parent == out / "proxy" / "proxy-seed0"
    assert json.loads((out / "runs" / "acodm-seed0" / "summary.json").read_text())["policy"] == str(
        policy
    )
    assert summary.headline["odm"].steps_to_reference.per_seed[0].ratio == 1.0
    assert "agent" in json.loads((out / "runs" / "acodm-online-seed0" / "summary.json").read_text())
    kinds = {
        m: json.loads((Path(summary.proxies[m].runs[0].policy) / "policy.json").read_text())["kind"]
        for m in ("acodm", "alignment-proxy", "ppo", "acodm-lossreward@small")
    }
    assert kinds == {
        "acodm": "actor",
        "alignment-proxy": "trajectory",
        "ppo": "mlp",
        "acodm-lossreward@small": "actor",
    }
    assert (
        summary.proxies["acodm-lossreward@small"].model["hidden_size"] == 8
    )  # tiny.yaml's "small"
    assert summary.headline["alignment"].final_weights != summary.headline["uniform"].final_weights
    for path, value in _all_numbers(written):
        assert math.isfinite(value), path
    # an existing comparison is not clobbered
    assert (
        compare_job.main(
            [
                "--config",
                "configs/tiny.yaml",
                "--quick",
                "--output-dir",
                str(out.parent),
                "--name",
                out.name,
            ]
        )
        == 2
    )


# ---------------------------------------------------------------------- orchestration, without Ray


DOMAINS = ["a", "b"]
# average validation perplexity at steps 2, 4, 6, 8 of each method: ODM's best is 50 at step 8;
# acodm gets there at step 4 (ratio 0.5), natural never does
CURVES = {
    "uniform": [90, 70, 55, 51],
    "natural": [95, 80, 70, 60],
    "odm": [90, 70, 60, 50],
    "acodm": [80, 50, 45, 40],
    "acodm-online": [85, 65, 50, 48],
}


def fake_target_runner(calls):
    def run(cfg, run_dir, resume=False, overwrite=False):
        from acodm_ray.target import mixer_label

        method = "acodm" if cfg.target.policy else mixer_label(cfg)
        calls.append((method, cfg.train.seed, cfg.target.policy))
        run_dir.mkdir(parents=True, exist_ok=True)
        slow = {"acodm-online": 1.2, "acodm": 1.05}.get(method, 1.0)  # per-step seconds vs uniform
        with open(run_dir / "metrics.jsonl", "w") as f, open(run_dir / "ranks.tmp", "w") as r:
            for step in range(1, 9):
                w = [0.9, 0.1] if method == "acodm" else [0.5, 0.5]
                f.write(
                    json.dumps(
                        {
                            "kind": "step",
                            "step": step,
                            "seconds": 0.09 * slow,
                            **{f"weight/{d}": x for d, x in zip(DOMAINS, w)},
                        }
                    )
                    + "\n"
                )
                r.write(
                    json.dumps({"step": step, "seconds": 0.1 * slow, "max_rss_mb": 1000.0 + step})
                    + "\n"
                )
                if step % 2 == 0:
                    avg = (
                        CURVES[method][step // 2 - 1] + cfg.train.seed
                    )  # seeds shift the curves alike
                    f.write(
                        json.dumps(
                            {
                                "kind": "eval",
                                "step": step,
                                "val_ppl/average": float(avg),
                                "val_ppl/a": avg - 1.0,
                                "val_ppl/b": avg + 1.0,
                            }
                        )
                        + "\n"
                    )
        (run_dir / "ranks").mkdir(exist_ok=True)
        (run_dir / "ranks.tmp").replace(run_dir / "ranks" / "rank0.jsonl")
        summary = {
            "steps": cfg.train.steps,
            "domains": DOMAINS,
            "seconds": 5.0,
            "mixer": method,
            "server": {"max_rss_mb": 400.0 if method == "uniform" else 420.0},
        }
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    return run


def fake_proxy_runner(calls, fail_seeds=()):
    def run(cfg, run_dir, overwrite, trainer="rl"):
        calls.append(
            cfg.train.seed if trainer == "rl" else (trainer, cfg.mixer.name, cfg.train.seed)
        )
        if cfg.train.seed in fail_seeds:
            raise RuntimeError("proxy crashed")
        (run_dir / "policy").mkdir(parents=True, exist_ok=True)
        summary = {"algo": "acodm", "policy": str(run_dir / "policy")}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        return summary

    return run


def test_run_comparison_headline_failure_and_resume(tmp_path):
    from acodm_ray.compare import run_comparison

    cfg = load_compare_config(
        "configs/tiny.yaml",
        ["compare.seeds=2", "compare.concurrency=3", "compare.target.train.steps=8"],
    )
    targets, proxies = [], []
    out = tmp_path / "cmp"
    summary = ComparisonSummary.from_json(
        run_comparison(
            cfg, out, fake_proxy_runner(proxies, fail_seeds=(1,)), fake_target_runner(targets)
        )
    )
    assert ComparisonSummary.read(out / "summary.json") == summary
    assert summary.failures == {
        "proxy-seed1": "RuntimeError: proxy crashed",
        "acodm-seed1": "not run: proxy-seed1 failed",
    }
    from acodm_ray.compare import headline_lines

    # the terminal summary names the failed run and why, next to the method's numbers
    lines = {line.split(":", 1)[0]: line for line in headline_lines(summary)}
    assert lines["acodm"].endswith("; failed: acodm-seed1: not run: proxy-seed1 failed")
    assert "failed" not in lines["uniform"] and "failed" not in lines["acodm-online"]
    assert len(targets) == 9 and sorted(proxies) == [0, 1]
    # the AC-ODM target run used its own seed's proxy policy
    assert ("acodm", 0, str(out / "proxy" / "proxy-seed0" / "policy")) in targets
    h = summary.headline
    assert h["acodm"].runs == 1 and h["acodm"].steps_to_reference.per_seed[0].ratio == 0.5
    assert h["natural"].steps_to_reference.reached == 0
    assert "not reached (0/2)" in (out / "table.md").read_text()
    assert h["acodm-online"].step_time_overhead_pct.mean == pytest.approx(20.0)
    assert h["acodm-online"].mixer_ms.mean == pytest.approx(12.0)  # 120 ms iteration - 108 ms step
    assert h["odm"].memory_overhead_pct.mean == pytest.approx(100 * (1428 / 1408 - 1))
    assert h["acodm"].max_final_weight_per_seed == {0: TopWeight(domain="a", weight=0.9)}
    assert (
        h["uniform"].step_time_overhead_pct is None
    )  # the baseline has no overhead against itself
    run = summary.runs["acodm-seed0"]
    assert (run.method, run.seed, run.steps_to_reference.steps) == ("acodm", 0, 4)
    assert run.server_peak_rss_mb == 420.0 and run.final_weights == {"a": 0.9, "b": 0.1}
    for name in ("val_ppl.png", "val_ppl_domains.png", "weights.png", "weights_seeds.png"):
        assert (out / name).is_file(), name

    # --resume: only the failed proxy stage and its AC-ODM run are run again; the rest is read back
    targets.clear(), proxies.clear()
    walls = {k: r.wall_s for k, r in summary.runs.items()}
    again = ComparisonSummary.from_json(
        run_comparison(
            cfg, out, fake_proxy_runner(proxies), fake_target_runner(targets), resume=True
        )
    )
    assert proxies == [1] and [t[:2] for t in targets] == [("acodm", 1)]
    assert not again.failures and again.headline["acodm"].runs == 2
    assert again.headline["acodm"].steps_to_reference.ratio == Spread(
        mean=0.5, std=0.0, min=0.5, max=0.5, n=2
    )
    assert all(
        again.runs[k].wall_s == pytest.approx(w) for k, w in walls.items()
    )  # kept, not re-timed
    assert again.resumed and again.wall_clock_s >= summary.wall_clock_s


# ---------------------------------------------------------------------- ablation methods


ABLATION = [
    "uniform",
    "odm",
    "odm-exp3",
    "alignment",
    "alignment-proxy",
    "acodm",
    "acodm-gamma0",
    "acodm-lossreward",
    "acodm-nowarmup",
    "acodm-narrow",
    "acodm-wide",
    "ppo",
    "sac",
    "acodm@small",
    "acodm@large",
    "acodm-iid",
    "acodm-meanq",
    "acodm-zscore",
    "acodm-noguard",
    "acodm-paperwarmup",
    "acodm-horizon",
    "acodm-cross",
    "acodm-eval",
    "acodm-evalppl",
    "acodm-paper",
    "acodm-reference",
    "acodm-reference-online",
]


def test_every_ablation_method_builds_its_configs(tmp_path):
    cfg = load_compare_config(
        "configs/demo.yaml",
        [f"compare.methods={json.dumps(ABLATION)}", "compare.proxy_per_seed=false"],
    )
    base = proxy_config(cfg, 0, "acodm")
    expect = {  # what each proxy variant changes against plain AC-ODM's proxy stage
        "acodm-gamma0": lambda p: p.agent.gamma == 0.0 and base.agent.gamma == 0.95,
        "acodm-lossreward": lambda p: p.env.reward == "loss" and base.env.reward == "alignment",
        "acodm-nowarmup": lambda p: (
            p.agent.warmup_fraction == 0.0 and base.agent.warmup_fraction > 0
        ),
        "acodm-narrow": lambda p: (p.agent.actor_hidden, p.agent.critic_hidden) == (32, 32),
        "acodm-wide": lambda p: (p.agent.actor_hidden, p.agent.critic_hidden) == (512, 512),
        "ppo": lambda p: p.rl.algo == "ppo",
        "sac": lambda p: p.rl.algo == "sac",
        "acodm@small": lambda p: p.model.hidden_size == 32 and p.rl.algo == "acodm",
        "acodm@large": lambda p: (
            p.model.hidden_size == 128 and p.model.num_layers == base.model.num_layers
        ),
        "alignment-proxy": lambda p: p.mixer.name == "alignment" and p.model == base.model,
        # one of our fixes off each (the base has them all on)
        "acodm-iid": lambda p: p.train.coverage == "iid" and base.train.coverage == "weighted",
        "acodm-meanq": lambda p: (
            p.agent.actor_objective == "mean" and base.agent.actor_objective == "weighted"
        ),
        "acodm-zscore": lambda p: p.signals.score == "paper" and base.signals.score == "total",
        "acodm-noguard": lambda p: (
            (p.agent.weight_floor, p.agent.entropy_coef) == (0.0, 0.0)
            and base.agent.weight_floor > 0
            and base.agent.entropy_coef > 0
        ),
        "acodm-horizon": lambda p: (
            p.agent.value_units == "horizon" and base.agent.value_units == "relative"
        ),
        "acodm-cross": lambda p: p.signals.score == "cross" and base.signals.score == "total",
        "acodm-eval": lambda p: p.signals.score == "eval" and base.signals.score == "total",
        "acodm-evalppl": lambda p: (
            (p.signals.score, p.signals.eval_weighting) == ("eval", "perplexity")
            and base.signals.eval_weighting == "loss"
        ),
        "acodm-paperwarmup": lambda p: (
            p.agent.warmup_updates is None
            and not p.agent.imitate_odm_only
            and p.agent.lr_schedule == "constant"
            and base.agent.lr_schedule == "cosine"
        ),
        # the paper's text and the published code: every switch back, on the proxy
        "acodm-paper": lambda p: (
            (
                p.agent.actor_objective,
                p.signals.score,
                p.train.coverage,
                p.agent.weight_floor,
                p.signals.progress_scale,
                p.agent.freeze_actor,
            )
            == ("mean", "paper", "iid", 0.0, 100.0, False)
        ),
        "acodm-reference": lambda p: (
            (p.agent.freeze_actor, p.train.coverage, p.signals.score, p.signals.progress_scale)
            == (True, "forced", "paper", 100.0)
        ),
    }
    for method, check in expect.items():
        p = proxy_config(cfg, 0, method)
        assert check(p), method
        assert (
            p.signals.state_layers == base.signals.state_layers
            and p.train.steps == base.train.steps
        ), method
    assert base.agent.actor_hidden == 128 and base.rl.algo == "acodm"
    assert target_config(cfg, "odm-exp3", 0).mixer.odm_variant == "exp3"
    assert target_config(cfg, "odm", 0).mixer.odm_variant == "smoothed_mean"
    assert target_config(cfg, "alignment", 0).mixer.name == "alignment"
    assert target_config(cfg, "acodm@small", 0, policy="/p").target.policy == "/p"
    # what proxy and target must share goes to the target too (the state's progress scale, the sampler)
    for method, coverage in (
        ("acodm-paper", "iid"),
        ("acodm-reference", "forced"),
        ("acodm-reference-online", "forced"),
    ):
        tgt = target_config(cfg, method, 0)
        assert (tgt.signals.progress_scale, tgt.train.coverage) == (100.0, coverage), method
    online = target_config(cfg, "acodm-reference-online", 0)
    assert (
        online.target.online_acodm and online.agent.freeze_actor and online.signals.score == "paper"
    )
    assert target_config(cfg, "acodm", 0, policy="/p").train.coverage == "weighted"
    with pytest.raises(CompareError, match="no proxy stage"):
        proxy_config(cfg, 0, "odm")
    # one proxy stage per proxy method (proxy_per_seed: false), every target run of it waits for it
    specs = plan(cfg, tmp_path)
    proxies = [s for s in specs if s.kind == "proxy"]
    assert sorted(s.method for s in proxies) == sorted([*expect, "acodm"])
    assert {s.key for s in proxies} >= {
        "proxy-seed0",
        "proxy-acodm@small-seed0",
        "proxy-alignment-proxy-seed0",
    }
    targets = [s for s in specs if s.kind == "target"]
    assert len(targets) == 3 * len(ABLATION)
    assert {s.depends for s in targets if s.method == "acodm-gamma0"} == {
        "proxy-acodm-gamma0-seed0"
    }
    assert all(
        s.depends is None
        for s in targets
        if s.method in ("uniform", "odm", "odm-exp3", "alignment")
    )


def test_unknown_ablation_names_and_sizes_are_refused(capsys):
    with pytest.raises(CompareError, match="valid methods are: .*acodm-gamma0.*<method>@<size>"):
        parse_methods("acodm-gamma1")
    with pytest.raises(CompareError, match="unknown method"):
        parse_methods("odm@small")  # a size only goes with a proxy method
    with pytest.raises(ConfigError, match="no proxy size 'huge'.*'large', 'small'"):
        load_compare_config("configs/demo.yaml", ["compare.methods=[odm, acodm@huge]"])
    rc = compare_job.main(["--config", "configs/tiny.yaml", "--quick", "--methods", "odm,ppo2"])
    err = capsys.readouterr().err
    assert rc == 2 and "ppo2" in err and all(m in err for m in METHODS)


def test_ablation_orchestration_passes_each_proxy_stage_its_trainer(tmp_path):
    from acodm_ray.compare import run_comparison

    methods = ["uniform", "odm", "alignment-proxy", "acodm", "acodm-gamma0"]
    cfg = load_compare_config(
        "configs/tiny.yaml",
        [
            f"compare.methods={json.dumps(methods)}",
            "compare.seeds=1",
            "compare.target.train.steps=8",
        ],
    )
    targets, proxies = [], []
    written = run_comparison(
        cfg, tmp_path / "cmp", fake_proxy_runner(proxies), fake_target_runner(targets)
    )
    summary = ComparisonSummary.from_json(written)
    assert not summary.failures
    # the mixer-trajectory stage got trainer="mixer" and the alignment mixer; RLlib stages the default
    assert ("mixer", "alignment", 0) in proxies and proxies.count(0) == 2
    assert set(summary.proxies) == {"alignment-proxy", "acodm", "acodm-gamma0"}
    mixer_stage = summary.proxies["alignment-proxy"]
    assert (mixer_stage.trainer, mixer_stage.mixer, mixer_stage.agent) == (
        "mixer",
        "alignment",
        None,
    )
    assert summary.proxies["acodm-gamma0"].agent.gamma == 0.0
    assert summary.proxy == summary.proxies["acodm"]  # and summary.json keeps it as "proxy"
    assert written["proxy"] == written["proxies"]["acodm"]
    policies = {t[2] for t in targets if t[2]}
    assert policies == {
        str(tmp_path / "cmp" / "proxy" / k / "policy")
        for k in ("proxy-seed0", "proxy-alignment-proxy-seed0", "proxy-acodm-gamma0-seed0")
    }
    table = (tmp_path / "cmp" / "table.md").read_text()
    assert "Proxy of alignment-proxy" in table and "| acodm-gamma0 |" in table
    assert summary.headline["acodm-gamma0"].proxy_wall_s.n == 1


RL_VARIANTS = [
    "acodm-gamma0",
    "acodm-lossreward",
    "acodm-nowarmup",
    "acodm-narrow",
    "acodm-wide",
    "acodm-reference",
    "acodm-eval",
]


@pytest.mark.parametrize("method", RL_VARIANTS)
def test_each_acodm_variant_trains_a_couple_of_iterations(ray_session, tmp_path, method):
    from policies.compare_proxy import train_proxy_policy

    cfg = load_compare_config(
        "configs/tiny.yaml",
        [
            "compare.proxy.train.steps=6",
            "compare.proxy.rl.iterations=2",
            "compare.proxy.rl.min_sample_timesteps_per_iteration=6",
            "train.grad_accum=7",
        ],
    )  # forced coverage: one per domain
    pcfg = proxy_config(cfg, 0, method)
    summary = train_proxy_policy(pcfg, tmp_path / method)
    records = [
        json.loads(line)
        for line in (tmp_path / method / "iterations.jsonl").read_text().splitlines()
    ]
    assert [r["iteration"] for r in records] == [1, 2] and summary["iterations"] == 2
    from acodm_ray.agent.policy_file import load_policy

    actor, meta = load_policy(summary["policy"])
    saved = meta["config"]
    # the variant reached the trained agent: its knob is in the config the policy was trained with
    assert {
        "acodm-gamma0": saved["agent"]["gamma"] == 0.0,
        "acodm-lossreward": saved["env"]["reward"] == "loss",
        "acodm-nowarmup": saved["agent"]["warmup_fraction"] == 0.0,
        "acodm-narrow": actor.hidden == 8,
        "acodm-wide": actor.hidden == 128,
        "acodm-reference": saved["agent"]["freeze_actor"] and meta["floor"] == 0.0,
        "acodm-eval": saved["signals"]["score"] == "eval"
        and any(
            k.startswith("score/") and v is not None and np.isfinite(v)
            for r in records
            for k, v in r.items()
        ),
    }[method]
    with torch.no_grad():
        w = actor(torch.zeros(1, meta["state_dim"]))
    assert torch.isfinite(w).all() and float(w.sum()) == pytest.approx(1.0, abs=1e-5)


def test_paper_scale_preset_is_a_160m_proxy_and_a_1b_target_on_gpus(tmp_path):
    """configs/paper-pythia.yaml loads and plans offline (nothing is downloaded before the runs)."""
    cfg = load_compare_config(
        "configs/paper-pythia.yaml",
        ["compare.methods=[uniform, odm, acodm, acodm-online, acodm@410m]"],
    )
    tgt, prx, prx410 = (
        target_config(cfg, "odm", 0),
        proxy_config(cfg, 0),
        proxy_config(cfg, 0, "acodm@410m"),
    )
    assert (tgt.model.hidden_size, tgt.model.num_layers, tgt.model.intermediate_size) == (
        2048,
        16,
        8192,
    )  # Pythia-1B
    assert (prx.model.hidden_size, prx.model.num_layers, prx.model.intermediate_size) == (
        768,
        12,
        3072,
    )  # Pythia-160M
    assert (prx410.model.hidden_size, prx410.model.num_layers) == (1024, 24)  # Pythia-410M
    assert tgt.signals.state_layers == prx.signals.state_layers == prx410.signals.state_layers == 8
    assert (
        tgt.train.seq_len
        * tgt.train.micro_batch_size
        * tgt.train.grad_accum
        * tgt.target.num_workers
        == 2**21
    )
    assert tgt.target.use_gpu and tgt.target.num_workers == 8 and cfg.compare.proxy_gpus == 1
    assert tgt.corpus.source == "hub" and tgt.tokenizer.from_hub and tgt.train.dtype == "bfloat16"
    assert (prx.agent.actor_hidden, prx.agent.actor_layers) == (1024, 5)  # the reference's networks
    specs = plan(cfg, tmp_path)
    assert [s.key for s in specs if s.kind == "proxy"] == ["proxy-seed0", "proxy-acodm@410m-seed0"]


def test_steps_to_uniform_final_convergence_gain_and_decoy_weight():
    from acodm_ray.compare import decoy_weight_curve, last_quarter_gain, steps_to_final_of

    curves = {
        "uniform": {0: ([10, 20, 30, 40], [9.0, 7.0, 6.0, 5.7])},
        "fast": {0: ([10, 20, 30, 40], [8.0, 5.5, 5.0, 4.9])},
        "slow": {0: ([10, 20, 30, 40], [9, 8, 7, 6])},
    }
    out = steps_to_final_of(curves, "uniform")
    assert out["fast"][0] == SeedSteps(target=5.7, steps=20, reference_steps=40, ratio=0.5)
    assert out["slow"][0].steps is None and out["uniform"][0].steps == 40
    assert last_quarter_gain([10, 20, 30, 40], [9.0, 7.0, 6.0, 5.7]) == pytest.approx(1 - 5.7 / 6.0)
    w = np.array(
        [[0.4, 0.1, 0.5], [0.2, 0.1, 0.7], [0.05, 0.05, 0.9]]
    )  # 3 steps, decoys are domains 0 and 1
    dw = decoy_weight_curve({0: w, 1: w * 0 + [0.1, 0.1, 0.8]}, [0, 1])
    assert list(dw.at) == [0.0, 0.1, 0.25, 0.5, 1.0]  # fractions of training
    assert dw.at[0.0].mean == pytest.approx((0.5 + 0.2) / 2)
    assert dw.at[1.0].mean == pytest.approx((0.1 + 0.2) / 2)
    assert dw.mean.mean == pytest.approx(((0.5 + 0.3 + 0.1) / 3 + 0.2) / 2)


def test_mixing_benchmark_preset_plans_every_method(tmp_path):
    """configs/bench.yaml (BENCHMARKS.md "Mixing benchmark"): one proxy stage per proxy method, the
    proxy smaller than the target, every domain covered on both, ours against the paper and the code."""
    cfg = load_compare_config("configs/bench.yaml")
    assert cfg.compare.methods == [
        "uniform",
        "natural",
        "odm",
        "alignment",
        "acodm-reference",
        "acodm-paper",
        "acodm",
        "acodm-online",
        "sac",
    ]
    specs = plan(cfg, tmp_path)
    assert sorted(s.method for s in specs if s.kind == "proxy") == [
        "acodm",
        "acodm-paper",
        "acodm-reference",
        "sac",
    ]
    prx, tgt = proxy_config(cfg, 0, "acodm"), target_config(cfg, "acodm", 0, policy="/p")
    assert (
        prx.model.hidden_size <= tgt.model.hidden_size
        and prx.model.num_layers <= tgt.model.num_layers
    )
    assert (prx.model.hidden_size, prx.model.num_layers) != (
        tgt.model.hidden_size,
        tgt.model.num_layers,
    )
    assert tgt.train.grad_accum >= 7 and (prx.train.coverage, tgt.train.coverage) == (
        "weighted",
        "weighted",
    )
    assert (
        prx.rl.iterations * prx.rl.min_sample_timesteps_per_iteration >= 2000
    )  # thousands of transitions


@pytest.mark.parametrize(
    "name", ["mixing", "mixing-decoys", "mixing-merged", "mixing-ablations", "mixing-swamped"]
)
def test_committed_mixing_tables_re_render_from_their_summaries(name):
    """BENCHMARKS.md's mixing tables are table.md of finished comparisons; their summaries are kept in
    benchmarks/results/. Rendering a summary again must give the committed table, so a change to the
    report code that would change a published number or column shows here."""
    summary = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
    table = render_table(summary).strip()
    assert table.count("\n") > 10
    assert table in (ROOT / "BENCHMARKS.md").read_text()
