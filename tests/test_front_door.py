"""Target-aware mixing as the front door (docs/method.md, "Named targets"): signals.score "auto", the
default, is the evaluation-aimed reward "eval" in every path when train.eval_domains names what is
evaluated (the proxy of acodm and of sac, online AC-ODM on the target), and "total" otherwise."""

from __future__ import annotations

import json

import pytest

from acodm_ray.compare import proxy_config, target_config
from acodm_ray.compare.configs import load_compare_config
from acodm_ray.config import ConfigError, load_config
from acodm_ray.signals import resolve_score

REAL = "train.eval_domains=[python_code,dictionary,c_headers,manuals,literature,latex,legal]"
METHODS = ["uniform", "acodm", "acodm-online", "sac", "acodm-total", "acodm-eval", "acodm-cross"]


def test_resolve_score_by_hand():
    assert resolve_score("auto", ["legal"]) == "eval"
    assert resolve_score("auto", []) == "total"
    assert resolve_score("auto", ()) == "total"
    for explicit in ("paper", "total", "cross", "eval"):  # a choice made by name is kept
        assert resolve_score(explicit, ["legal"]) == explicit
        assert resolve_score(explicit, []) == explicit
    with pytest.raises(ValueError, match=r"\['paper', 'total', 'cross', 'eval', 'auto'\]"):
        resolve_score("evals", [])


def test_a_loaded_config_has_its_score_resolved():
    assert load_config("configs/bench.yaml").signals.score == "total"
    assert load_config("configs/bench.yaml", [REAL]).signals.score == "eval"
    assert load_config("configs/bench.yaml", [REAL, "signals.score=total"]).signals.score == "total"
    assert load_config("configs/bench.yaml", ["signals.score=eval"]).signals.score == "eval"
    with pytest.raises(ConfigError, match="signals.score must be one of"):
        load_config("configs/bench.yaml", ["signals.score=evals"])


@pytest.mark.parametrize("named", [True, False])
def test_every_path_gets_the_evaluation_aimed_reward_when_targets_are_named(named):
    sets = [f"compare.methods={json.dumps(METHODS)}", *([REAL] if named else [])]
    cfg = load_compare_config("configs/bench.yaml", sets)
    want = "eval" if named else "total"
    assert proxy_config(cfg, 0, "acodm").signals.score == want  # proxy mode, the default method
    assert proxy_config(cfg, 0, "sac").signals.score == want  # SAC on the same env
    online = target_config(cfg, "acodm-online", 0)  # non-proxy mode: the agent on the target
    assert online.target.online_acodm and online.signals.score == want
    # named choices stay what they name: the front door's ablation, and the variants
    assert proxy_config(cfg, 0, "acodm-total").signals.score == "total"
    assert proxy_config(cfg, 0, "acodm-eval").signals.score == "eval"
    assert proxy_config(cfg, 0, "acodm-cross").signals.score == "cross"
    assert proxy_config(cfg, 0, "acodm").train.eval_domains == (
        ["python_code", "dictionary", "c_headers", "manuals", "literature", "latex", "legal"]
        if named
        else []
    )
