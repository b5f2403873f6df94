"""The DDPG math of AC-ODM, written once (pure torch).

Used by the RLlib learner (policies/acodm) and by the online agent of non-proxy mode. Each loss
touches the parameters of exactly one network, so each optimizer can be stepped by its own loss
(the reference code steps the critic's optimizer with the actor's loss; docs/method.md).
`update_critic_loss` / `update_actor_loss` are the one place that decides which loss an update
uses (warm-up or DDPG) for both agents. What each agent still does its own way, on purpose: the
online agent steps the critic before it computes the actor's loss (the RLlib learner computes both
in one forward pass, as DDP needs), and it hard-copies the targets just before its first DDPG update
where the learner copies them right after its last warm-up update (the same targets at the first
DDPG update either way).

Shapes: obs/next_obs (B, S), actions/weights (B, K), vector_rewards (B, K), dones (B,),
behaviour (B,) (1 where ODM chose the row's weights). A NaN reward marks a domain that was not
scored in that step (signals.score "total"): it is masked out of the critic loss, not taken as 0.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from acodm_ray.agent.config import (
    TEMPERATURES,
    VALUE_GRADIENTS,
    VALUE_UNITS,
    AgentConfig,
    actor_objective,
)
from acodm_ray.agent.optimum import (  # noqa: F401  (re-exported: ddpg.floored_softmax, ...)
    FITTED_OBJECTIVES,
    floored_softmax,
    objective_optimum,
    proportional,
)


def _done_mask(dones: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) terminal flags -> (B, 1) float mask of 1 - done."""
    mask = 1.0 - dones.to(like.dtype).reshape(-1, 1)
    if mask.shape[0] != like.shape[0]:
        raise ValueError(f"dones has {mask.shape[0]} rows, the batch has {like.shape[0]}")
    return mask


def masked_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite entries of `target` (all of them: plain MSE)."""
    mask = torch.isfinite(target)
    diff = torch.where(mask, prediction - torch.nan_to_num(target), torch.zeros_like(prediction))
    return diff.pow(2).sum() / mask.sum().clamp_min(1)


def critic_targets(
    target_actor: nn.Module,
    target_critic: nn.Module,
    vector_rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma (1 - done) Q'(s', pi'(s')), per domain; no gradient (targets are constants).
    NaN rewards stay NaN (masked by `critic_loss`)."""
    with torch.no_grad():
        next_q = target_critic(next_obs, target_actor(next_obs))
        return vector_rewards + gamma * _done_mask(dones, next_q) * next_q


def critic_loss(
    critic: nn.Module,
    target_actor: nn.Module,
    target_critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    vector_rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """MSE(Q(s, a), r + gamma (1 - done) Q'(s', pi'(s'))) over the scored entries: gradients reach
    only `critic`."""
    y = critic_targets(target_actor, target_critic, vector_rewards, next_obs, dones, gamma)
    return masked_mse(critic(obs, actions), y)


def q_frozen(critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q(s, a) evaluated with DETACHED critic parameters: gradients flow to `actions` (hence to the
    actor) but never into the critic, whatever optimizer is stepped afterwards."""
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    frozen.update(dict(critic.named_buffers()))
    return functional_call(critic, frozen, (obs, actions))


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """H(w) = -sum_i w_i log w_i per row (B,)."""
    return -(weights * torch.log(weights.clamp_min(1e-12))).sum(dim=-1)


def per_step_values(q: torch.Tensor, gamma: float, units: str) -> torch.Tensor:
    """The critic's values (B, K) in the units the entropy temperature is measured in.

    "horizon": (1 - gamma) Q, the per-step reward of a critic that has learnt the whole discounted
    sum. A critic still short of it (Q near r after a few thousand updates with slow target networks)
    gives values (1 - gamma) times too small, and any temperature then keeps the mix uniform.
    "relative": Q / mean_{b,i} |Q| (the scale is a constant, no gradient): values in units of the
    batch's typical value, whatever horizon the critic has learnt so far; with rewards scaled to
    mean |s| = 1 (signals.RunningScale) this is the per-step score again once the critic converges."""
    if units == "horizon":
        return (1.0 - gamma) * q
    if units == "relative":
        return q / q.detach().abs().mean().clamp_min(1e-12)
    raise ValueError(f"unknown value units {units!r}; choose one of {list(VALUE_UNITS)}")


def evidence_temperature(rewards: torch.Tensor) -> float:
    """The standard error of the batch's per-domain mean reward, in the values' relative units.
    Over the domains scored in at least two rows (n_i finite rows, mean m_i, sample std sd_i with
    ddof 1, SE_i = sd_i / sqrt(n_i)):

        T = sqrt(mean_i SE_i^2) / mean_i |m_i|     (a constant, no gradient).

    Why: the "weighted" actor's optimum is softmax(v / T), v the critic's values relative to their
    mean magnitude (`per_step_values`, ~ m_i / mean_i |m_i| once the critic has learnt the means),
    so it weighs domain i exp((v_i - v_j) / T) times domain j. With T the standard error of those
    relative means, (v_i - v_j) / T counts standard errors: domains the batch cannot tell apart keep
    about equal weight, a domain many standard errors below the others keeps only its floor, and
    less noisy rewards (signals.score_window) move the mix further. A fixed T = 1 (one typical
    value) keeps the best domain within exp(spread) of the worst whatever the evidence. No domain
    scored twice, or all means 0: no evidence, T = 1."""
    with torch.no_grad():
        r = rewards.to(torch.float64)
        finite = torch.isfinite(r)
        n = finite.sum(dim=0)
        ok = n >= 2
        if not bool(ok.any()):
            return 1.0
        x = torch.where(finite, r, torch.zeros_like(r))
        mean = x.sum(dim=0) / n.clamp_min(1)
        dev2 = torch.where(finite, (x - mean) ** 2, torch.zeros_like(r))
        se2 = (dev2.sum(dim=0) / (n - 1).clamp_min(1) / n.clamp_min(1))[ok]
        scale = mean[ok].abs().mean()
        if float(scale) <= 0.0:
            return 1.0
        return float(se2.mean().sqrt() / scale)


def actor_temperature(agent: AgentConfig, rewards: torch.Tensor | None) -> float:
    """The temperature (the entropy term's coefficient) of the actor's loss: `agent.entropy_coef`
    ("fixed"; also "auto" left unresolved, as outside a job, where no score chose it), or
    `agent.entropy_coef` x `evidence_temperature(rewards)` ("evidence")."""
    if agent.temperature in ("fixed", "auto"):
        return float(agent.entropy_coef)
    if agent.temperature == "evidence":
        if rewards is None:
            raise ValueError('agent.temperature "evidence" needs the batch\'s vector rewards')
        return float(agent.entropy_coef) * evidence_temperature(rewards)
    raise ValueError(f"unknown temperature {agent.temperature!r}; choose one of {TEMPERATURES}")


def actor_loss(
    actor: nn.Module,
    critic: nn.Module,
    obs: torch.Tensor,
    objective: str,
    entropy_coef: float,
    gamma: float,
    value_units: str,
    value_gradient: str,
) -> torch.Tensor:
    """The actor's loss; the critic is not updated by it (its parameters are detached). The settings
    have no defaults here: an agent passes its AgentConfig's (`update_actor_loss`), the one place
    their defaults live.

    objective "mean" (the paper): -mean_i Q_i(s, pi(s)) over batch and domains. With z-scored
    rewards that sum to 0 its target is action-independent, and it ignores how pi spreads weight.
    objective "weighted": -sum_i pi_i v_i with v = per_step_values(Q(s, pi(s)), gamma, value_units),
    the value of the scalar reward r = sum_i w_i s_i in per-step units, minus `entropy_coef` H(pi):
    its optimum over the simplex is a softmax of the values at temperature `entropy_coef` instead
    of a vertex.

    value_gradient "action" (DDPG): the gradient also runs through the critic's action input,
    sum_j pi_j dv_j / dpi_i. "none": the values are constants to the actor (Q(s, pi(s)) evaluated at
    the detached weights), so the gradient is that of sum_i pi_i v_i + c H(pi) with v fixed and the
    loss's minimiser is exactly softmax(v / c) of the critic's per-domain values: the policy step of
    discrete SAC with the domains as its actions. Why: a domain's score <g_i, g_ref> does not depend
    on this step's weights (to first order), so dv / da is what the critic made up where the replay
    holds almost no variation of the action (exploration noise 1e-3), not evidence.

    objective "projection": -sum_i w*_i log pi_i with w* = floored_softmax(v, entropy_coef, floor),
    the "weighted" objective's optimum at the current values held constant (no gradient): the same
    minimiser reached by a cross-entropy whose gradient in the logits is pi - w* (for a softmax
    head), where the weighted objective's is pi (v - pi.v) and the entropy's, both vanishing as a
    weight goes to 0, so the actor follows a low temperature in far fewer updates (the policy step
    of MPO / discrete SAC: fit the improved policy instead of ascending to it).

    objectives "proportional" and "lcb": the same cross-entropy fit, to weights proportional to the
    positive part of the values (less the temperature for "lcb"): `optimum.proportional` says why.
    (docs/studies/2026-12-05-closing-the-gap-dev.md)"""
    weights = actor(obs)
    if value_gradient not in VALUE_GRADIENTS:
        raise ValueError(f"unknown value gradient {value_gradient!r}; one of {VALUE_GRADIENTS}")
    if objective in FITTED_OBJECTIVES:  # an optimum at constant values, fitted
        with torch.no_grad():
            v = per_step_values(critic(obs, weights), gamma, value_units)
            best = objective_optimum(
                v, objective, float(entropy_coef), float(getattr(actor, "floor", 0.0))
            )
        return -(best.to(weights.dtype) * torch.log(weights.clamp_min(1e-12))).sum(dim=-1).mean()
    q = q_frozen(critic, obs, weights.detach() if value_gradient == "none" else weights)
    if objective == "mean":
        value = q.mean(dim=-1)
    elif objective == "weighted":
        value = (weights * per_step_values(q, gamma, value_units)).sum(dim=-1)
    else:
        raise ValueError(
            f"unknown actor objective {objective!r}; choose weighted, mean, projection, "
            "proportional or lcb"
        )
    return -(value + entropy_coef * entropy(weights)).mean()


def imitation_loss(
    actor: nn.Module,
    obs: torch.Tensor,
    behaviour_weights: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Warm-up actor loss: MSE(pi(s), w_odm), so the actor starts from ODM's behaviour. With `rows`
    (B,) only the rows it marks (the ones ODM chose) count; a batch with none gives 0."""
    err = (actor(obs) - behaviour_weights.detach()).pow(2).mean(dim=-1)
    if rows is None:
        return err.mean()
    mask = rows.to(err.dtype).reshape(-1)
    return (err * mask).sum() / mask.sum().clamp_min(1)


def warmup_critic_loss(
    critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    vector_rewards: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Warm-up critic loss of docs/method.md: MSE(Q(s, a), r + gamma r) (no bootstrapping from targets
    that are still random)."""
    y = (vector_rewards + gamma * vector_rewards).detach()
    return masked_mse(critic(obs, actions), y)


def td_error(
    critic: nn.Module,
    target_actor: nn.Module,
    target_critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    vector_rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> float:
    """Mean |Q(s, a) - y| over the scored entries (a diagnostic; no gradient)."""
    with torch.no_grad():
        y = critic_targets(target_actor, target_critic, vector_rewards, next_obs, dones, gamma)
        mask = torch.isfinite(y)
        return (
            float((critic(obs, actions) - torch.nan_to_num(y)).abs()[mask].mean())
            if mask.any()
            else 0.0
        )


@torch.no_grad()
def value_spread(
    actor: nn.Module,
    critic: nn.Module,
    obs: torch.Tensor,
    gamma: float,
    value_units: str,
) -> float:
    """max_i - min_i of the per-step domain values mean_b v_i(s_b, pi(s_b)), v as the actor sees
    them (`per_step_values`; a diagnostic, no gradient). The "weighted" actor's optimum is a softmax of these values at
    temperature entropy_coef, so it weighs the best domain exp(spread / entropy_coef) times the
    worst: a spread far below entropy_coef means the critic gives the actor no reason to leave
    uniform."""
    values = per_step_values(critic(obs, actor(obs)), gamma, value_units).mean(dim=0)
    return float(values.max() - values.min())


@torch.no_grad()
def optimum_gap(
    actor: nn.Module,
    critic: nn.Module,
    obs: torch.Tensor,
    temperature: float,
    gamma: float,
    value_units: str = "relative",
    objective: str = "weighted",
) -> float:
    """Mean over the batch of the total variation distance between the actor's weights and the
    optimum of its objective at its own values, `objective_optimum` (a diagnostic): near 0, the
    actor has reached what its critic and temperature ask for; large, it lags them (too few or too
    small actor steps), whatever the temperature says."""
    weights = actor(obs)
    values = per_step_values(critic(obs, weights), gamma, value_units)
    floor = float(getattr(actor, "floor", 0.0))
    target = objective_optimum(values, objective, temperature, floor)
    return float(0.5 * (weights.to(target.dtype) - target).abs().sum(dim=-1).mean())


def update_critic_loss(
    warmup: bool,
    critic: nn.Module,
    target_actor: nn.Module,
    target_critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    vector_rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """The critic's loss in one update of either agent (RLlib learner, online agent): during the
    learning warm-up `warmup_critic_loss` (the targets are not used yet), after it the TD
    `critic_loss`. Gradient reaches: the critic."""
    if warmup:
        return warmup_critic_loss(critic, obs, actions, vector_rewards, gamma)
    return critic_loss(
        critic, target_actor, target_critic, obs, actions, vector_rewards, next_obs, dones, gamma
    )


def update_actor_loss(
    warmup: bool,
    actor: nn.Module,
    critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    behaviour: torch.Tensor | None,
    agent: AgentConfig,
    rewards: torch.Tensor | None = None,
) -> torch.Tensor:
    """The actor's loss in one update of either agent: during the learning warm-up `imitation_loss`
    of the executed weights (on the rows ODM chose when `agent.imitate_odm_only`), after it the
    agent's objective (`actor_loss`) at the temperature `actor_temperature` (which reads the
    batch's vector `rewards` under `agent.temperature: evidence`). Gradient reaches: the actor; with
    `agent.freeze_actor` (the reference's behaviour) nothing: the loss comes back detached, for
    logging only."""
    if warmup:
        loss = imitation_loss(actor, obs, actions, behaviour if agent.imitate_odm_only else None)
    else:
        loss = actor_loss(
            actor,
            critic,
            obs,
            actor_objective(agent),
            actor_temperature(agent, rewards),
            agent.gamma,
            agent.value_units,
            agent.value_gradient,
        )
    return loss.detach() if agent.freeze_actor else loss


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging target <- tau online + (1 - tau) target; tau = 1 is an exact hard copy."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("target and online networks have different parameter lists")
    for t, o in zip(t_params, o_params):
        if tau == 1.0:
            t.copy_(o)
        else:
            t.mul_(1.0 - tau).add_(o, alpha=tau)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)


def explore(
    weights: torch.Tensor, noise: float, rng: torch.Generator | None = None
) -> torch.Tensor:
    """Exploration of the reference, for any K: subtract U[0, noise] per domain, clamp at 0,
    renormalise. A row whose noisy weights all vanish keeps its input weights (still a
    distribution)."""
    if noise < 0:
        raise ValueError(f"exploration noise must be >= 0, got {noise}")
    if noise == 0:
        return weights
    u = torch.rand(weights.shape, generator=rng, device=weights.device, dtype=weights.dtype)
    noisy = (weights - noise * u).clamp_min(0.0)
    total = noisy.sum(dim=-1, keepdim=True)
    ok = total > 0
    return torch.where(ok, noisy / torch.where(ok, total, torch.ones_like(total)), weights)
