"""The AC-ODM RLModule: softmax actor, vector critic, their targets (new API stack).

The networks and the DDPG math come from `acodm_ray.agent` (written once, shared with the online
agent). `forward_train` computes both losses through those functions so a (DDP-wrapped) forward
pass holds everything the learner back-propagates; which losses (warm-up or DDPG) depends on the
`num_updates` buffer, which the learner advances and which is saved with the module's state, so
the warm-up phase survives checkpoint/restore.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule
from ray.rllib.utils.annotations import override

from acodm_ray.agent import ddpg
from acodm_ray.agent.config import AgentConfig, actor_objective
from acodm_ray.agent.networks import Actor, VectorCritic

VECTOR_REWARDS = "vector_rewards"
BEHAVIOUR_WARMUP = "behaviour_warmup"  # the connector's column: 1 where ODM chose the weights
ACTOR_LOSS = "actor_loss"
CRITIC_LOSS = "critic_loss"
IN_WARMUP = "in_warmup"
TD_ERROR = "td_error"
WEIGHT_ENTROPY = "weight_entropy"
VALUE_SPREAD = "value_spread"
TEMPERATURE = "temperature"
OPTIMUM_GAP = "optimum_gap"


def agent_from_model_config(model_config: dict[str, Any] | None) -> tuple[AgentConfig, int]:
    """(the agent's hyperparameters, warm-up updates) from a model_config ACODMConfig wrote: the
    whole AgentConfig under "agent". Specs pickled before that listed the fields flat; those read too."""
    model_config = dict(model_config or {})
    fields = {f.name for f in dataclasses.fields(AgentConfig)}
    agent = model_config.get("agent") or {k: v for k, v in model_config.items() if k in fields}
    return AgentConfig(**agent), int(model_config.get("warmup_updates", 0))


class ACODMTorchRLModule(TorchRLModule, InferenceOnlyAPI, TargetNetworkAPI):
    """pi(s) -> softmax weights; Q(s, a) -> R^K. On env runners only the actor is built."""

    @override(RLModule)
    def setup(self) -> None:
        if not isinstance(self.action_space, gym.spaces.Box) or len(self.action_space.shape) != 1:
            raise ValueError(
                f"AC-ODM needs a 1-D Box action space (one weight per domain), got {self.action_space}"
            )
        if (
            not isinstance(self.observation_space, gym.spaces.Box)
            or len(self.observation_space.shape) != 1
        ):
            raise ValueError(
                f"AC-ODM needs a 1-D Box observation space, got {self.observation_space}"
            )
        self.agent, self._warmup_updates = agent_from_model_config(self.model_config)
        agent = self.agent
        state_dim = int(self.observation_space.shape[0])
        num_domains = int(self.action_space.shape[0])
        self.actor = Actor.from_config(agent, state_dim, num_domains)
        if not self.inference_only:
            self.critic = VectorCritic(
                state_dim, num_domains, agent.critic_hidden, agent.critic_layers
            )
        # Learner updates done so far; decides warm-up vs DDPG. A buffer, so it is checkpointed.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    # ------------------------------------------------------------------ target networks
    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self.target_actor = make_target_network(self.actor)
        self.target_critic = make_target_network(self.critic)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        return [(self.actor, self.target_actor), (self.critic, self.target_critic)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        with torch.no_grad():
            weights = self.target_actor(obs)
            return {"target_weights": weights, "target_q": self.target_critic(obs, weights)}

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return ["critic", "target_actor", "target_critic"]

    # ------------------------------------------------------------------ forward passes
    @property
    def warmup_updates(self) -> int:
        return self._warmup_updates

    def in_warmup(self) -> bool:
        return int(self.num_updates.item()) < self.warmup_updates

    @override(RLModule)
    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            return {Columns.ACTIONS: self.actor(batch[Columns.OBS])}

    @override(RLModule)
    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            weights = self.actor(batch[Columns.OBS])
            return {Columns.ACTIONS: ddpg.explore(weights, self.agent.exploration_noise)}

    @override(RLModule)
    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        obs = batch[Columns.OBS]
        # ACTIONS are the weights the env executed (the learner connector puts them there).
        actions = batch[Columns.ACTIONS].to(obs.dtype)
        rewards = batch[VECTOR_REWARDS].to(obs.dtype)
        agent = self.agent
        gamma = agent.gamma
        next_obs, dones = batch[Columns.NEXT_OBS], batch[Columns.TERMINATEDS]
        warm = self.in_warmup()
        c_loss = ddpg.update_critic_loss(
            warm,
            self.critic,
            self.target_actor,
            self.target_critic,
            obs,
            actions,
            rewards,
            next_obs,
            dones,
            gamma,
        )
        behaviour = batch[BEHAVIOUR_WARMUP] if warm and agent.imitate_odm_only else None
        a_loss = ddpg.update_actor_loss(
            warm, self.actor, self.critic, obs, actions, behaviour, agent, rewards
        )
        with torch.no_grad():
            entropy = ddpg.entropy(self.actor(obs)).mean()
        td = ddpg.td_error(
            self.critic,
            self.target_actor,
            self.target_critic,
            obs,
            actions,
            rewards,
            next_obs,
            dones,
            gamma,
        )
        spread = ddpg.value_spread(self.actor, self.critic, obs, gamma, agent.value_units)
        temperature = ddpg.actor_temperature(agent, rewards)
        gap = ddpg.optimum_gap(
            self.actor,
            self.critic,
            obs,
            temperature,
            gamma,
            agent.value_units,
            actor_objective(agent),
        )
        return {
            ACTOR_LOSS: a_loss,
            CRITIC_LOSS: c_loss,
            IN_WARMUP: warm,
            TD_ERROR: td,
            WEIGHT_ENTROPY: entropy,
            VALUE_SPREAD: spread,
            TEMPERATURE: temperature,
            OPTIMUM_GAP: gap,
        }
