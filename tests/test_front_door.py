"""Target-aware mixing as the front door (docs/method.md, "Named targets"): signals.score "auto", the
default, is the evaluation-aimed reward "eval" in every path when train.eval_domains names what is
evaluated (the proxy of acodm and of sac, online AC-ODM on the target), with the evidence
temperature, the 8-step reward window, the weight floor of 0 and the lcb actor objective it brings,
and "total" (fixed temperature, no window, floor 0.01, the weighted objective) otherwise."""

from __future__ import annotations

import json

import pytest

from acodm_ray.agent.config import AgentConfig
from acodm_ray.compare import proxy_config, target_config
from acodm_ray.compare.configs import load_compare_config
from acodm_ray.config import ConfigError, SignalConfig, load_config
from acodm_ray.signals import resolve_named_targets, resolve_score

REAL = "train.eval_domains=[python_code,dictionary,c_headers,manuals,literature,latex,legal]"
METHODS = [
    "uniform",
    "acodm",
    "acodm-online",
    "sac",
    "acodm-total",
    "acodm-eval",
    "acodm-cross",
    "acodm-fixedtemp",
    "acodm-nowindow",
    "acodm-floor",
    "acodm-softmax",
]


def how(cfg) -> tuple[str, str, int, float, str]:
    """(signals.score, agent.temperature, signals.score_window, agent.weight_floor,
    agent.actor_objective) of a resolved config."""
    return (
        cfg.signals.score,
        cfg.agent.temperature,
        cfg.signals.score_window,
        cfg.agent.weight_floor,
        cfg.agent.actor_objective,
    )


def test_resolve_score_by_hand():
    assert resolve_score("auto", ["legal"]) == "eval"
    assert resolve_score("auto", []) == "total"
    assert resolve_score("auto", ()) == "total"
    for explicit in ("paper", "total", "cross", "eval"):  # a choice made by name is kept
        assert resolve_score(explicit, ["legal"]) == explicit
        assert resolve_score(explicit, []) == explicit
    with pytest.raises(ValueError, match=r"\['total', 'cross', 'eval', 'paper', 'auto'\]"):
        resolve_score("evals", [])


def test_resolve_named_targets_by_hand():
    """The eval score brings the evidence temperature, the 8-step window, no floor and the lcb
    objective; any other score the fixed temperature, no window, the floor 0.01 and the weighted
    objective; a value set by name is kept."""

    def resolved(score="auto", temperature="auto", window=None, floor=None, targets=(), obj="auto"):
        sig, agent = resolve_named_targets(
            SignalConfig(score=score, score_window=window),
            AgentConfig(temperature=temperature, weight_floor=floor, actor_objective=obj),
            targets,
        )
        return (
            sig.score,
            agent.temperature,
            sig.score_window,
            agent.weight_floor,
            agent.actor_objective,
        )

    assert resolved(targets=["legal"]) == ("eval", "evidence", 8, 0.0, "lcb")
    assert resolved() == ("total", "fixed", 1, 0.01, "weighted")
    assert resolved(score="eval") == ("eval", "evidence", 8, 0.0, "lcb")
    assert resolved(score="cross", targets=["legal"]) == ("cross", "fixed", 1, 0.01, "weighted")
    assert resolved(temperature="fixed", targets=["legal"]) == ("eval", "fixed", 8, 0.0, "lcb")
    assert resolved(window=1, targets=["legal"]) == ("eval", "evidence", 1, 0.0, "lcb")
    assert resolved(temperature="evidence", window=4) == ("total", "evidence", 4, 0.01, "weighted")
    assert resolved(floor=0.02, targets=["legal"]) == ("eval", "evidence", 8, 0.02, "lcb")
    assert resolved(floor=0.0) == ("total", "fixed", 1, 0.0, "weighted")
    assert resolved(obj="weighted", targets=["legal"]) == ("eval", "evidence", 8, 0.0, "weighted")
    assert resolved(obj="lcb") == ("total", "fixed", 1, 0.01, "lcb")
    with pytest.raises(ValueError, match="score_window"):
        resolved(window=0)


@pytest.mark.parametrize("change", [{"eval_weighting": "fair"}, {"geometry": "adam"}])
def test_eval_score_settings_without_the_eval_score_are_refused(change):
    """signals.eval_weighting and signals.geometry shape the eval score only: with another score
    they would be ignored, so the config is refused, naming them; with the eval score (named
    targets or by name) they are kept."""
    with pytest.raises(ValueError, match="shape the eval score, but signals.score is 'total'"):
        resolve_named_targets(SignalConfig(**change), AgentConfig(), [])
    with pytest.raises(ConfigError, match="shape the eval score"):
        load_config("configs/bench.yaml", [f"signals.{k}={v}" for k, v in change.items()])
    sig, _ = resolve_named_targets(SignalConfig(**change), AgentConfig(), ["legal"])
    assert (sig.score, sig.eval_weighting, sig.geometry) == (
        "eval",
        change.get("eval_weighting", "loss"),
        change.get("geometry", "plain"),
    )


def test_a_loaded_config_has_its_score_resolved():
    assert how(load_config("configs/bench.yaml")) == ("total", "fixed", 1, 0.01, "weighted")
    assert how(load_config("configs/bench.yaml", [REAL])) == ("eval", "evidence", 8, 0.0, "lcb")
    assert load_config("configs/bench.yaml", [REAL, "signals.score=total"]).signals.score == "total"
    assert load_config("configs/bench.yaml", ["signals.score=eval"]).signals.score == "eval"
    with pytest.raises(ConfigError, match="signals.score must be one of"):
        load_config("configs/bench.yaml", ["signals.score=evals"])


@pytest.mark.parametrize("named", [True, False])
def test_every_path_gets_the_evaluation_aimed_reward_when_targets_are_named(named):
    sets = [f"compare.methods={json.dumps(METHODS)}", *([REAL] if named else [])]
    cfg = load_compare_config("configs/bench.yaml", sets)
    want = ("eval", "evidence", 8, 0.0, "lcb") if named else ("total", "fixed", 1, 0.01, "weighted")
    assert how(proxy_config(cfg, 0, "acodm")) == want  # proxy mode, the default method
    assert how(proxy_config(cfg, 0, "sac")) == want  # SAC on the same env (its reward)
    online = target_config(cfg, "acodm-online", 0)  # non-proxy mode: the agent on the target
    assert online.target.online_acodm and how(online) == want
    # named choices stay what they name: the front door's ablations, and the variants
    assert how(proxy_config(cfg, 0, "acodm-total")) == ("total", "fixed", 1, 0.01, "weighted")
    assert how(proxy_config(cfg, 0, "acodm-eval")) == ("eval", "evidence", 8, 0.0, "lcb")
    assert how(proxy_config(cfg, 0, "acodm-cross")) == ("cross", "fixed", 1, 0.01, "weighted")
    floor = how(proxy_config(cfg, 0, "acodm-floor"))
    assert floor == (
        ("eval", "evidence", 8, 0.01, "lcb") if named else ("total", "fixed", 1, 0.01, "weighted")
    )
    fixed, nowindow = (
        proxy_config(cfg, 0, "acodm-fixedtemp"),
        proxy_config(cfg, 0, "acodm-nowindow"),
    )
    assert how(fixed) == (
        ("eval", "fixed", 8, 0.0, "lcb") if named else ("total", "fixed", 1, 0.01, "weighted")
    )
    assert how(nowindow) == (
        ("eval", "evidence", 1, 0.0, "lcb") if named else ("total", "fixed", 1, 0.01, "weighted")
    )
    softmax = how(proxy_config(cfg, 0, "acodm-softmax"))
    assert softmax == (("eval", "evidence", 8, 0.0, "weighted") if named else want)
    assert proxy_config(cfg, 0, "acodm").train.eval_domains == (
        ["python_code", "dictionary", "c_headers", "manuals", "literature", "latex", "legal"]
        if named
        else []
    )
