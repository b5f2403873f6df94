"""The methods a comparison can run, by name: what each one changes in the target's and the proxy's
config, and how a method list from the command line is checked. The paper's and the published code's
settings (`acodm-paper`, `acodm-reference`) are our switches set back (docs/method.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from acodm_ray.config import CompareConfig, deep_merge
from acodm_ray.errors import AcodmError


@dataclass(frozen=True)
class Method:
    """One way of choosing the target's domain weights.

    kind: "mixer" (a mixer runs online on the target; `overrides` go into the target config),
    "proxy" (a policy is learned on a smaller proxy and frozen on the target; `overrides` go into
    the proxy stage's config) or "online" (the AC-ODM agent learns on the target itself; `overrides`
    go into the target config). `shared` goes into the target AND the proxy config: what must be the
    same on both (the state layout's progress scale, the sampler of the paper's code).
    trainer (proxy kind): "rl" (RLlib trains `rl.algo` on DataMixingEnv and exports its policy) or
    "mixer" (the proxy pretrains with a mixer; its weight trajectory is replayed by progress).
    width_scale (proxy kind): multiplies the actor's and critic's hidden width."""

    description: str
    kind: str
    overrides: dict[str, Any] = field(default_factory=dict)
    trainer: str = "rl"
    width_scale: float | None = None
    shared: dict[str, Any] = field(default_factory=dict)


# Our changes to the paper's AC-ODM (docs/method.md), each written once as the paper's setting that
# switches it back: the ablations set back one each, `acodm-paper` all of them (the paper's text,
# its actor really trained) and `acodm-reference` what the published code runs on top of that.
# They go into the proxy stage's config (an online method's: the target's); `PAPER_SHARED` into the
# target's too, as it shapes the state or the sampler the policy is used with.
PAPER_OBJECTIVE: dict[str, Any] = {"agent": {"actor_objective": "mean"}}
PAPER_NO_GUARD: dict[str, Any] = {"agent": {"weight_floor": 0.0, "entropy_coef": 0.0}}
PAPER_WARMUP: dict[str, Any] = {
    "agent": {"warmup_updates": None, "imitate_odm_only": False, "lr_schedule": "constant"}
}
PAPER_REWARD: dict[str, Any] = {"signals": {"score": "paper"}}
PAPER_SAMPLER: dict[str, Any] = {"train": {"coverage": "iid"}}
PAPER_SHARED: dict[str, Any] = deep_merge({"signals": {"progress_scale": 100.0}}, PAPER_SAMPLER)
PAPER_PROXY: dict[str, Any] = {}
for _switch in (PAPER_OBJECTIVE, PAPER_NO_GUARD, PAPER_WARMUP, PAPER_REWARD):
    PAPER_PROXY = deep_merge(PAPER_PROXY, _switch)
REFERENCE_SHARED = deep_merge(PAPER_SHARED, {"train": {"coverage": "forced"}})
REFERENCE_PROXY = deep_merge(PAPER_PROXY, {"agent": {"freeze_actor": True}})

METHODS: dict[str, Method] = {
    "uniform": Method("static, uniform weights", "mixer", {"mixer": {"name": "uniform"}}),
    "natural": Method(
        "static, natural proportions (train tokens per domain)",
        "mixer",
        {"mixer": {"name": "natural"}},
    ),
    "odm": Method(
        "ODM: bandit on per-domain losses, online (smoothed mean)",
        "mixer",
        {"mixer": {"name": "odm", "odm_variant": "smoothed_mean"}},
    ),
    "odm-exp3": Method(
        "ODM with the textbook EXP3 update, online",
        "mixer",
        {"mixer": {"name": "odm", "odm_variant": "exp3"}},
    ),
    "alignment": Method(
        "gradient-alignment mixer, no RL (DoGE rule on AC-ODM's scores), online on the target",
        "mixer",
        {"mixer": {"name": "alignment"}},
    ),
    "alignment-proxy": Method(
        "gradient-alignment mixer run on the proxy, its weight trajectory replayed by progress",
        "proxy",
        {"mixer": {"name": "alignment"}},
        trainer="mixer",
    ),
    "acodm": Method(
        "AC-ODM (ours, every fix on), proxy mode: policy learned with RLlib on a smaller proxy, "
        "frozen on the target",
        "proxy",
    ),
    "acodm-online": Method(
        "AC-ODM (ours, every fix on), non-proxy mode: the agent learns online on the target",
        "online",
    ),
    "acodm-paper": Method(
        "AC-ODM as the paper states it (mean-Q actor, z-scored zero-sum reward, i.i.d. "
        "micro-batches, no floor, progress x 100), actor really trained, proxy mode",
        "proxy",
        PAPER_PROXY,
        shared=PAPER_SHARED,
    ),
    "acodm-paper-online": Method(
        "acodm-paper in non-proxy mode", "online", PAPER_PROXY, shared=PAPER_SHARED
    ),
    "acodm-reference": Method(
        "AC-ODM as the published code runs: ODM warm-up, then the actor at its random "
        "init (its optimizer is never stepped), one forced micro-batch per domain, proxy mode",
        "proxy",
        REFERENCE_PROXY,
        shared=REFERENCE_SHARED,
    ),
    "acodm-reference-online": Method(
        "acodm-reference in non-proxy mode (what the published code does)",
        "online",
        REFERENCE_PROXY,
        shared=REFERENCE_SHARED,
    ),
    # ablations of our AC-ODM: one fix switched off each
    "acodm-iid": Method(
        "ablation: acodm with i.i.d. micro-batches on the proxy (no domain coverage)",
        "proxy",
        PAPER_SAMPLER,
    ),
    "acodm-meanq": Method(
        "ablation: acodm with the paper's actor objective -mean_i Q_i", "proxy", PAPER_OBJECTIVE
    ),
    "acodm-zscore": Method(
        "ablation: acodm rewarded with the paper's zero-sum z-scored alignment",
        "proxy",
        PAPER_REWARD,
    ),
    "acodm-cross": Method(
        "variant: acodm rewarded with the cross terms only, <g_i, sum_{j != i} g_j> / running "
        "scale (the self term's micro-batch noise removed)",
        "proxy",
        {"signals": {"score": "cross"}},
    ),
    "acodm-eval": Method(
        "variant: acodm rewarded by alignment with the evaluation domains' gradient, <g_i, g_ref> / "
        "running scale, g_ref from one more micro-batch of those domains on the proxy",
        "proxy",
        {"signals": {"score": "eval"}},
    ),
    "acodm-evalppl": Method(
        "variant: acodm-eval with the reference rows' losses weighted by their domain's "
        "perplexity, so g_ref follows the gradient of the mean per-domain perplexity (the metric)",
        "proxy",
        {"signals": {"score": "eval", "eval_weighting": "perplexity"}},
    ),
    "acodm-fair": Method(
        "variant: acodm-eval with each reference row's loss weighted by 1 / its domain's measured "
        "per-step loss decrease under the mix, so g_ref follows the gradient of sum_e log(decrease_e): "
        "proportional fairness over the evaluated domains (signals.eval_weighting: fair)",
        "proxy",
        {"signals": {"score": "eval", "eval_weighting": "fair"}},
    ),
    "acodm-adam": Method(
        "variant: acodm whose eval score measures agreement in AdamW's geometry, <g_i, P g_ref> with "
        "P the optimizer's per-coordinate step scale on the alignment matrices "
        "(signals.geometry: adam)",
        "proxy",
        {"signals": {"score": "eval", "geometry": "adam"}},
    ),
    # named targets (train.eval_domains) and how far the mix moves (docs/method.md, "Named targets")
    "acodm-total": Method(
        "ablation: acodm rewarded with the total alignment even where train.eval_domains names the "
        "evaluated domains (signals.score: total; the default auto gives eval there), which "
        "brings back the fixed temperature and no window: the default before named targets",
        "proxy",
        {"signals": {"score": "total"}},
    ),
    "acodm-fixedtemp": Method(
        "ablation: acodm at the fixed temperature entropy_coef = 1 (agent.temperature: fixed) "
        "instead of the evidence temperature its eval score brings",
        "proxy",
        {"agent": {"temperature": "fixed"}},
    ),
    "acodm-nowindow": Method(
        "ablation: acodm with each step's own scores as the reward (signals.score_window: 1) "
        "instead of their mean over the last 8 steps its eval score brings",
        "proxy",
        {"signals": {"score_window": 1}},
    ),
    "acodm-floor": Method(
        "ablation: acodm with the weight floor 0.01 per domain (agent.weight_floor: 0.01) that its "
        "eval score otherwise drops",
        "proxy",
        {"agent": {"weight_floor": 0.01}},
    ),
    "acodm-softmax": Method(
        "ablation: acodm whose actor follows the softmax of its critic's values at the temperature "
        "(agent.actor_objective: weighted) instead of weights proportional to each value's lower "
        "confidence bound (lcb) its eval score brings: the named-targets default before lcb",
        "proxy",
        {"agent": {"actor_objective": "weighted"}},
    ),
    "acodm-floormass": Method(
        "variant: acodm with one total floor of 0.07 split over the K domains (agent.floor_mass), "
        "0.01 each at K = 7, 0.005 at K = 14",
        "proxy",
        {"agent": {"floor_mass": 0.07}},
    ),
    "acodm-projection": Method(
        "variant: acodm whose actor is fitted by cross-entropy to its objective's optimum "
        "floored_softmax(v / T) (agent.actor_objective: projection) instead of ascending to it",
        "proxy",
        {"agent": {"actor_objective": "projection"}},
    ),
    "acodm-proportional": Method(
        "variant: acodm whose actor is fitted to weights proportional to the positive part of its "
        "critic's values (agent.actor_objective: proportional), the optimum of sum_i v_i log w_i, "
        "instead of the softmax of the values at a temperature",
        "proxy",
        {"agent": {"actor_objective": "proportional"}},
    ),
    "acodm-lcb": Method(
        "variant: acodm-proportional with the temperature subtracted from the values first "
        "(agent.actor_objective: lcb, the named-targets default, here also without named targets): "
        "weights proportional to each value's lower confidence bound",
        "proxy",
        {"agent": {"actor_objective": "lcb"}},
    ),
    "acodm-constvalues": Method(
        "variant: acodm whose actor takes the critic's per-domain values as constants, no gradient "
        "through the critic's action input (agent.value_gradient: none): its optimum is softmax(v/T)",
        "proxy",
        {"agent": {"value_gradient": "none"}},
    ),
    "acodm-noguard": Method(
        "ablation: acodm without the weight floor and the entropy term", "proxy", PAPER_NO_GUARD
    ),
    "acodm-horizon": Method(
        "ablation: acodm with the critic's values in per-step units (1 - gamma) Q instead of "
        "relative to their mean magnitude",
        "proxy",
        {"agent": {"value_units": "horizon"}},
    ),
    "acodm-paperwarmup": Method(
        "ablation: acodm with the paper's warm-up (one imitation update per warm-up "
        "decision, on every row) and a constant agent lr",
        "proxy",
        PAPER_WARMUP,
    ),
    "acodm-gamma0": Method(
        "AC-ODM proxy mode with gamma = 0 (the critic predicts the immediate reward: a "
        "contextual bandit)",
        "proxy",
        {"agent": {"gamma": 0.0}},
    ),
    "acodm-lossreward": Method(
        "AC-ODM proxy mode rewarded by per-domain loss decrease instead of gradient alignment",
        "proxy",
        {"env": {"reward": "loss"}},
    ),
    "acodm-nowarmup": Method(
        "AC-ODM proxy mode without the ODM warm-up and actor imitation",
        "proxy",
        {"agent": {"warmup_fraction": 0.0, "warmup_updates": 0}},
    ),
    "acodm-narrow": Method(
        "AC-ODM proxy mode, actor and critic 4x narrower", "proxy", width_scale=0.25
    ),
    "acodm-wide": Method("AC-ODM proxy mode, actor and critic 4x wider", "proxy", width_scale=4.0),
    "ppo": Method(
        "RLlib PPO on the same env (scalar reward), policy transferred like AC-ODM's",
        "proxy",
        {"rl": {"algo": "ppo"}},
    ),
    "sac": Method(
        "RLlib SAC on the same env (scalar reward), policy transferred like AC-ODM's",
        "proxy",
        {"rl": {"algo": "sac"}},
    ),
    "appo": Method(
        "RLlib APPO on the same env (scalar reward), policy transferred like AC-ODM's",
        "proxy",
        {"rl": {"algo": "appo"}},
    ),
    "file": Method(
        "static, the weights of the YAML/JSON file named by mixer.weights_file (your own recipe)",
        "mixer",
        {"mixer": {"name": "file"}},
    ),
}
DEFAULT_METHODS = list(CompareConfig().methods)  # the paper's comparison (compare.methods' default)
SIZE_SEP = "@"  # "acodm@small": a proxy method with the proxy size compare.proxy_sizes["small"]
REFERENCE = "odm"  # the paper's headline: steps to reach ODM's best validation perplexity
STATIC_BASELINES = ("uniform", "natural")  # overheads are measured against the first one present


class CompareError(AcodmError, ValueError):
    """A comparison cannot be set up (bad method list, incompatible proxy, ...)."""


def split_method(name: str) -> tuple[str, str | None]:
    """ "acodm@small" -> ("acodm", "small"); "odm" -> ("odm", None)."""
    base, sep, size = name.partition(SIZE_SEP)
    return base, (size if sep else None)


def method_of(name: str) -> Method:
    return METHODS[split_method(name)[0]]


def _valid_methods_text() -> str:
    proxy = [m for m, spec in METHODS.items() if spec.kind == "proxy"]
    return (
        f"{', '.join(METHODS)}; a proxy method ({', '.join(proxy)}) may take a proxy size from "
        f"compare.proxy_sizes as <method>{SIZE_SEP}<size>"
    )


def parse_methods(methods: str | Sequence[str], sizes: dict[str, Any] | None = None) -> list[str]:
    """ "uniform,odm" or ["uniform", "odm"] -> checked list (order kept, duplicates dropped). With
    `sizes` (compare.proxy_sizes) the size of every "<method>@<size>" is checked too."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[str] = []
    for item in items:
        name = str(item).strip()
        if name and name not in out:
            out.append(name)
    unknown = []
    for name in out:
        base, size = split_method(name)
        if base not in METHODS or (
            size is not None and (METHODS[base].kind != "proxy" or not size)
        ):
            unknown.append(name)
        elif size is not None and sizes is not None and size not in sizes:
            raise CompareError(
                f"method {name!r}: no proxy size {size!r} in compare.proxy_sizes "
                f"(sizes: {sorted(sizes) or 'none'})"
            )
    if unknown:
        raise CompareError(
            f"unknown method(s) {unknown}; valid methods are: {_valid_methods_text()}"
        )
    if not out:
        raise CompareError(f"no method given; valid methods are: {_valid_methods_text()}")
    return out


def proxy_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if method_of(m).kind == "proxy"]
