"""The AC-ODM actor and vector critic (pure torch, no RLlib).

Both are plain MLPs whose hidden layers are Linear -> LayerNorm -> ReLU, the block of the
reference code. The actor ends in a softmax over the K domains (its output IS the mixture);
the critic sees [state, action] and returns one value per domain (the vector critic: each
domain's own gradient-alignment score gets its own Q).
"""

from __future__ import annotations

import torch
from torch import nn

from acodm_ray.agent.config import AgentConfig, floor_per_domain


def _check_sizes(state_dim: int, num_domains: int, hidden: int, layers: int) -> None:
    for name, value in (("state_dim", state_dim), ("num_domains", num_domains), ("hidden", hidden)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be an integer >= 1, got {layers!r}")


def mlp_trunk(in_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` blocks of Linear -> LayerNorm -> ReLU (LayerNorm keeps the z-scored state and the
    [0, 1] action on the same footing, as in the reference)."""
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*blocks)


class Actor(nn.Module):
    """pi(s) -> w in the simplex: (1 - K floor) softmax(logits) + floor. The floor (agent.weight_floor,
    or agent.floor_mass / K; 0 in the paper) is part of the network, so the exported policy keeps it on the target too."""

    def __init__(
        self, state_dim: int, num_domains: int, hidden: int, layers: int, floor: float = 0.0
    ) -> None:
        super().__init__()
        _check_sizes(state_dim, num_domains, hidden, layers)
        if not 0.0 <= floor * num_domains < 1.0:
            raise ValueError(
                f"actor floor {floor} with {num_domains} domains: need 0 <= floor * K < 1"
            )
        self.floor = float(floor)
        self.state_dim = state_dim
        self.num_domains = num_domains
        self.hidden = hidden
        self.layers = layers
        self.trunk = mlp_trunk(state_dim, hidden, layers)
        self.head = nn.Linear(hidden, num_domains)

    @classmethod
    def from_config(cls, cfg: AgentConfig, state_dim: int, num_domains: int) -> Actor:
        return cls(
            state_dim,
            num_domains,
            cfg.actor_hidden,
            cfg.actor_layers,
            floor_per_domain(cfg, num_domains),
        )

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(obs))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.logits(obs), dim=-1)
        if self.floor == 0.0:
            return w
        return (1.0 - self.num_domains * self.floor) * w + self.floor


class VectorCritic(nn.Module):
    """Q(s, a) -> R^K: one action value per domain (the reward is a per-domain vector)."""

    def __init__(self, state_dim: int, num_domains: int, hidden: int, layers: int) -> None:
        super().__init__()
        _check_sizes(state_dim, num_domains, hidden, layers)
        self.state_dim = state_dim
        self.num_domains = num_domains
        self.hidden = hidden
        self.layers = layers
        self.trunk = mlp_trunk(state_dim + num_domains, hidden, layers)
        self.head = nn.Linear(hidden, num_domains)

    @classmethod
    def from_config(cls, cfg: AgentConfig, state_dim: int, num_domains: int) -> VectorCritic:
        return cls(state_dim, num_domains, cfg.critic_hidden, cfg.critic_layers)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(torch.cat([obs, actions], dim=-1)))


def build_networks(
    cfg: AgentConfig, state_dim: int, num_domains: int
) -> tuple[Actor, VectorCritic]:
    """The online actor and critic sized by the agent config (targets are deep copies of these)."""
    return Actor.from_config(cfg, state_dim, num_domains), VectorCritic.from_config(
        cfg, state_dim, num_domains
    )
