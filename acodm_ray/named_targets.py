"""The named-targets rule (docs/method.md, "Named targets"): what signals.score, agent.temperature,
signals.score_window, agent.weight_floor and agent.actor_objective left at "auto" / null become,
depending on whether the run names the domains it is evaluated on (`train.eval_domains`). Resolved
once, when a config is validated (acodm_ray/config.py) or a loop of your own builds its
MixingFeedback, so every path sees the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, get_args

from acodm_ray.agent.config import DEFAULT_FLOOR, DEFAULT_OBJECTIVE
from acodm_ray.config_train import Score

# signals.score: which per-domain reward the trainer computes ("auto" resolves to one of them)
SCORES = tuple(s for s in get_args(Score) if s != "auto")


def resolve_score(score: str, eval_domains: Sequence[str]) -> str:
    """signals.score "auto" (the default) -> "eval" when the run names the domains it is evaluated
    on (`train.eval_domains`), else "total"; any other choice is kept (checked against SCORES).

    Why: a user who says what they evaluate gets the reward aimed at it without knowing its name;
    where half the corpus is decoys it moved the mix off them and beat uniform on every seed, where
    "total" did not (BENCHMARKS.md, "as many decoys as real domains"). Without named targets the
    evaluation is every domain, and on the bundled corpus "total" was ahead of "eval" (ODM beat
    "eval" on all 5 seeds), so it stays the default there."""
    if score == "auto":
        return "eval" if len(eval_domains) > 0 else "total"
    if score not in SCORES:
        raise ValueError(f"signals.score must be one of {[*SCORES, 'auto']}, got {score!r}")
    return score


def reshapes_eval_score(sig: Any) -> bool:
    """Whether `sig` sets one of the settings that shape the eval score to other than its default
    (signals.eval_weighting "loss", signals.geometry "plain"): refused where the score is not
    "eval" (`resolve_named_targets`) and in a loop of your own (anyloop.reference)."""
    return sig.eval_weighting != "loss" or sig.geometry != "plain"


EVIDENCE_WINDOW = 8  # signals.score_window under the "eval" score (docs/method.md, "Named targets")


def resolve_named_targets(sig: Any, agent: Any, eval_domains: Sequence[str]) -> tuple[Any, Any]:
    """(signals, agent) configs with every "auto" resolved (copies): the front door of
    docs/method.md, "Named targets". signals.score "auto" is "eval" when `eval_domains` names what
    is evaluated, else "total" (`resolve_score`); then with the "eval" score agent.temperature
    "auto" is "evidence", signals.score_window None is EVIDENCE_WINDOW, agent.weight_floor None
    is 0 and agent.actor_objective "auto" is "lcb", with any other score "fixed", 1,
    agent.config.DEFAULT_FLOOR and agent.config.DEFAULT_OBJECTIVE ("weighted"). Why: the evidence
    temperature trusts the domains' mean rewards as far as their standard error says, which is
    right for an unbiased reward ("eval": g_ref is independent of the g_i) and wrong for "total",
    whose self term carries micro-batch noise that ranks domains by more than their real
    differences (benchmarks/score_noise.py); on the bundled corpus (seed 100) "total" at the
    evidence temperature starved literature and ended behind uniform. Under the evidence
    temperature the floor only holds the domains the evidence rules out at 0.01 each (on the junk
    setting, 7 decoys x 0.01 = half the weight the decoys kept), so it goes. And the softmax of
    the values at that temperature turns a generalist domain's 1.5 times another's value into 3-5
    times its weight, where weights proportional to each value less one standard error ("lcb")
    keep the domains the evidence supports about level and give nothing to one that is not a
    standard error above zero (docs/studies/2026-12-05-closing-the-gap-dev.md: on the development
    seed the worse of the two decoy settings went from 65% to 79% of the gap to the known answer)."""
    score = resolve_score(sig.score, eval_domains)
    aimed = score == "eval"
    if not aimed and reshapes_eval_score(sig):
        raise ValueError(
            f"signals.eval_weighting {sig.eval_weighting!r} and signals.geometry {sig.geometry!r} "
            f"shape the eval score, but signals.score is {score!r} here: name the evaluated domains "
            "(train.eval_domains) or set signals.score: eval, or leave both at their defaults"
        )
    window = sig.score_window
    if window is None:
        window = EVIDENCE_WINDOW if aimed else 1
    if int(window) < 1:
        raise ValueError(f"signals.score_window must be >= 1 or null, got {window}")
    temperature = agent.temperature
    if temperature == "auto":
        temperature = "evidence" if aimed else "fixed"
    floor = agent.weight_floor
    if floor is None:
        floor = 0.0 if aimed else DEFAULT_FLOOR
    objective = agent.actor_objective
    if objective == "auto":
        objective = "lcb" if aimed else DEFAULT_OBJECTIVE
    return (
        dataclasses.replace(sig, score=score, score_window=int(window)),
        dataclasses.replace(
            agent, temperature=temperature, weight_floor=float(floor), actor_objective=objective
        ),
    )
