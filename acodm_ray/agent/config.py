"""Hyperparameters of the AC-ODM agent (DDPG with a vector critic).

The defaults are the working AC-ODM of this project (docs/method.md, "Making AC-ODM work"). Each of
our changes to the paper's agent is one field (`actor_objective` to `lr_schedule` below); the
comparison's `acodm-paper` and `acodm-reference` methods set them back to the paper's and the
published code's values, and one ablation each sets one back (acodm_ray/compare/methods.py, the one
place those values are written). The reference uses 5 hidden layers of 1024 for the 410M/1B runs;
the presets scale this down for small proxies (see configs/).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from acodm_ray.typed_config import check_choices

ActorObjective = Literal["weighted", "mean", "projection", "proportional", "lcb", "auto"]
ValueUnits = Literal["horizon", "relative"]
LrSchedule = Literal["constant", "cosine"]
Temperature = Literal["fixed", "evidence", "auto"]
ValueGradient = Literal["action", "none"]
VALUE_UNITS = get_args(ValueUnits)  # of the actor's values: ddpg.per_step_values
TEMPERATURES = get_args(Temperature)  # how the actor's temperature is set: ddpg.actor_temperature
VALUE_GRADIENTS = get_args(ValueGradient)  # whether the actor's gradient runs through the critic


@dataclass
class AgentConfig:
    """The AC-ODM agent: networks, DDPG, the ODM warm-up, and our changes to the paper's agent."""

    actor_hidden: int = 1024
    """Hidden width of the actor."""
    actor_layers: int = 5
    """Hidden layers of the actor."""
    critic_hidden: int = 1024
    """Hidden width of the critic."""
    critic_layers: int = 5
    """Hidden layers of the critic."""
    gamma: float = 0.95
    """Discount factor."""
    tau: float = 0.001
    """Polyak averaging rate of the target networks."""
    actor_lr: float = 1e-4
    """The actor's learning rate (peak, under lr_schedule "cosine")."""
    critic_lr: float = 1e-4
    """The critic's learning rate (peak, under lr_schedule "cosine")."""
    replay_capacity: int = 10_000
    """Transitions the replay buffer holds."""
    batch_size: int = 32
    """Transitions per learner update."""
    warmup_fraction: float = 0.02
    """Share of each proxy episode's decisions chosen by ODM (the warm-up)."""
    exploration_noise: float = 1e-3
    """Largest uniform noise subtracted from the softmax before it is renormalised."""
    updates_per_step: int = 1
    """Learner updates per environment step."""
    actor_objective: ActorObjective = "auto"
    """The actor's loss: "weighted" -sum_i pi_i Q_i, the objective whose reward is
    r = sum_i w_i s_i; "mean" (the paper's) -mean_i Q_i, which does not depend on how the weights
    are spread; "projection" the cross-entropy to the weighted objective's optimum at constant
    values (ddpg.actor_loss), whose gradient does not vanish as a weight goes to 0; "proportional"
    the same fit to weights proportional to the positive part of the values (ddpg.proportional),
    the optimum of sum_i v_i log w_i: diminishing returns in each domain's share, no temperature;
    "lcb" the same with the temperature subtracted first, max(v - T, 0): under the evidence
    temperature (one standard error) weights proportional to each value's lower confidence bound;
    "auto" (the named-targets rule, named_targets.resolve_named_targets): "lcb" under the "eval"
    score, else DEFAULT_OBJECTIVE ("weighted")."""
    weight_floor: float | None = None
    """The actor outputs (1 - K floor) softmax + floor: no domain starves (the paper's: 0); null
    (the named-targets rule, signals.resolve_named_targets): 0 under the "eval" score, whose
    evidence temperature already keeps every domain the evidence cannot rule out, else
    DEFAULT_FLOOR (0.01)."""
    entropy_coef: float = 1.0
    """The "weighted" actor's loss is -[sum_i pi_i v_i + coef H(pi)]: a soft-greedy mix (the
    paper's: 0)."""
    value_units: ValueUnits = "relative"
    """The units of the actor's values v (ddpg.per_step_values): "relative" Q / mean |Q|;
    "horizon" (1 - gamma) Q, exact only for a critic that has learnt the whole discounted sum (on
    the benchmark's proxy budget it has not: its values came out ~10x below the scores' spread and
    the mix stayed uniform)."""
    warmup_updates: int | None = 100
    """Imitation updates after learning starts; null (the paper's): one per warm-up decision."""
    imitate_odm_only: bool = True
    """Imitate only the transitions ODM chose (the paper's: every replayed row)."""
    lr_schedule: LrSchedule = "cosine"
    """"cosine": a linear warm-up then a cosine decay of both learning rates (the reference's
    AnnealingLR); "constant" (our reading of the paper, which states one learning rate)."""
    lr_warmup_fraction: float = 0.05
    """Share of the agent's lifetime env steps its learning rates warm up over."""
    min_lr_ratio: float = 0.1
    """The cosine decay's end, as a share of each learning rate."""
    freeze_actor: bool = False
    """Never step the actor's optimizer: the published code's behaviour (method acodm-reference)."""
    temperature: Temperature = "auto"
    """How far the mix may leave uniform (docs/method.md): "fixed" the actor's temperature is
    entropy_coef; "evidence" entropy_coef x the standard error of the replay batch's per-domain mean
    reward in the values' relative units (ddpg.actor_temperature); "auto" evidence under the "eval"
    score (named targets), fixed otherwise (signals.resolve_named_targets)."""
    value_gradient: ValueGradient = "action"
    """"action" (DDPG): the actor's gradient runs through the critic's action input too; "none": the
    critic's per-domain values are constants to the actor, whose optimum is softmax(v / T)."""
    floor_mass: float | None = None
    """The floor's total mass, split evenly (floor_mass / K each; weight_floor is then unused);
    null: weight_floor per domain (floor_per_domain)."""


DEFAULT_FLOOR = 0.01  # agent.weight_floor without the "eval" score (and left unresolved)
DEFAULT_OBJECTIVE = "weighted"  # agent.actor_objective without the "eval" score (and unresolved)


def weight_floor(cfg: AgentConfig) -> float:
    """agent.weight_floor, null read as DEFAULT_FLOOR (unresolved, as outside a job, where no
    score chose it; signals.resolve_named_targets resolves it)."""
    return DEFAULT_FLOOR if cfg.weight_floor is None else float(cfg.weight_floor)


def actor_objective(cfg: AgentConfig) -> str:
    """agent.actor_objective, "auto" read as DEFAULT_OBJECTIVE (unresolved, as outside a job, where
    no score chose it; named_targets.resolve_named_targets resolves it)."""
    return DEFAULT_OBJECTIVE if cfg.actor_objective == "auto" else cfg.actor_objective


def floor_per_domain(cfg: AgentConfig, num_domains: int) -> float:
    """Each domain's weight floor: floor_mass / K when floor_mass is set, else weight_floor."""
    if cfg.floor_mass is None:
        return weight_floor(cfg)
    return float(cfg.floor_mass) / int(num_domains)


def check_agent(cfg: AgentConfig, num_domains: int | None = None) -> None:
    """Allowed values and ranges; with `num_domains`, also that the floor leaves room for the
    softmax."""
    check_choices(cfg, "agent")
    if weight_floor(cfg) < 0 or cfg.entropy_coef < 0:
        raise ValueError(
            f"agent.weight_floor and agent.entropy_coef must be >= 0, got {cfg.weight_floor}, {cfg.entropy_coef}"
        )
    if cfg.floor_mass is not None and not 0.0 <= cfg.floor_mass < 1.0:
        raise ValueError(f"agent.floor_mass must be in [0, 1) or null, got {cfg.floor_mass}")
    if num_domains is not None and floor_per_domain(cfg, num_domains) * num_domains >= 1.0:
        raise ValueError(
            f"agent.weight_floor = {weight_floor(cfg)} leaves nothing for the actor with {num_domains} "
            f"domains (need floor * K < 1, i.e. floor < {1.0 / num_domains:.4f})"
        )
    if cfg.warmup_updates is not None and cfg.warmup_updates < 0:
        raise ValueError(f"agent.warmup_updates must be >= 0 or null, got {cfg.warmup_updates}")
    if not 0.0 <= cfg.lr_warmup_fraction < 1.0 or not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ValueError(
            f"agent.lr_warmup_fraction must be in [0, 1) and agent.min_lr_ratio in [0, 1], "
            f"got {cfg.lr_warmup_fraction}, {cfg.min_lr_ratio}"
        )


def lr_points(
    cfg: AgentConfig, base_lr: float, total_steps: int, num_points: int = 17
) -> list[list[float]]:
    """The agent's learning rate as [[env_step, lr], ...], linear in between (RLlib's schedule format;
    the online agent interpolates the same points): constant, or a linear warm-up over
    `lr_warmup_fraction` of `total_steps` then a cosine decay to `min_lr_ratio` x base_lr."""
    if cfg.lr_schedule == "constant" or total_steps < 2:
        return [[0, base_lr]]
    warm = int(round(cfg.lr_warmup_fraction * total_steps))
    low = cfg.min_lr_ratio * base_lr
    points = [[0, base_lr / max(1, warm)]] if warm > 0 else []
    for k in range(num_points):
        t = warm + (total_steps - warm) * k / (num_points - 1)
        lr = low + 0.5 * (base_lr - low) * (1.0 + math.cos(math.pi * k / (num_points - 1)))
        points.append([int(round(t)), lr])
    return points


def lr_at(points: list[list[float]], step: float) -> float:
    """Piecewise-linear value of `points` at `step` (held flat outside them)."""
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    if step <= steps[0]:
        return float(values[0])
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        if step <= t1:
            return float(v0 + (v1 - v0) * (step - t0) / max(t1 - t0, 1e-12))
    return float(values[-1])
