"""The DDPG math of AC-ODM, written once (pure torch).

Used by the RLlib learner (policies/acodm) and by the online agent of non-proxy mode. Each loss
touches the parameters of exactly one network, so each optimizer can be stepped by its own loss
(the reference code steps the critic's optimizer with the actor's loss; SPEC.md).

Shapes: obs/next_obs (B, S), actions/weights (B, K), vector_rewards (B, K), dones (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def _done_mask(dones: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) terminal flags -> (B, 1) float mask of 1 - done."""
    mask = 1.0 - dones.to(like.dtype).reshape(-1, 1)
    if mask.shape[0] != like.shape[0]:
        raise ValueError(f"dones has {mask.shape[0]} rows, the batch has {like.shape[0]}")
    return mask


def critic_targets(
    target_actor: nn.Module,
    target_critic: nn.Module,
    vector_rewards: torch.Tensor,
    next_obs: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma (1 - done) Q'(s', pi'(s')), per domain; no gradient (targets are constants)."""
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
    """MSE(Q(s, a), r + gamma (1 - done) Q'(s', pi'(s'))): gradients reach only `critic`."""
    y = critic_targets(target_actor, target_critic, vector_rewards, next_obs, dones, gamma)
    return F.mse_loss(critic(obs, actions), y)


def q_frozen(critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q(s, a) evaluated with DETACHED critic parameters: gradients flow to `actions` (hence to the
    actor) but never into the critic, whatever optimizer is stepped afterwards."""
    frozen = {name: p.detach() for name, p in critic.named_parameters()}
    frozen.update(dict(critic.named_buffers()))
    return functional_call(critic, frozen, (obs, actions))


def actor_loss(actor: nn.Module, critic: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """-mean(Q(s, pi(s))) over batch and domains; the critic is not updated by this loss."""
    return -q_frozen(critic, obs, actor(obs)).mean()


def imitation_loss(
    actor: nn.Module, obs: torch.Tensor, behaviour_weights: torch.Tensor
) -> torch.Tensor:
    """Warm-up actor loss: MSE(pi(s), w_odm), so the actor starts from ODM's behaviour."""
    return F.mse_loss(actor(obs), behaviour_weights.detach())


def warmup_critic_loss(
    critic: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    vector_rewards: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Warm-up critic loss of SPEC.md: MSE(Q(s, a), r + gamma r) (no bootstrapping from targets
    that are still random)."""
    y = (vector_rewards + gamma * vector_rewards).detach()
    return F.mse_loss(critic(obs, actions), y)


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
