"""The online AC-ODM agent of non-proxy mode, as a `Mixer` (docs/method.md, "Two modes").

The agent learns while the target itself pretrains (the policy server holds it when
`target.online_acodm` is set):

- behaviour warm-up (the first `round(agent.warmup_fraction * train.steps)` steps): ODM chooses the
  weights;
- learning warm-up: the first `agent.warmup_updates` learner updates (paper, `warmup_updates: null`:
  every update made while ODM chooses) train the actor to imitate the executed ODM weights
  (`ddpg.imitation_loss`; with `agent.imitate_odm_only` on the ODM-chosen rows alone) and the
  critic towards r + gamma r (`ddpg.warmup_critic_loss`);
- before the first DDPG update the target networks are hard-copied from the online networks;
- then DDPG: the actor's output with the reference's exploration noise (`ddpg.explore`, for any K),
  critic TD loss against the target networks (`ddpg.critic_loss`), the actor loss of
  `agent.actor_objective` with a frozen critic (`ddpg.actor_loss`), Polyak target updates
  (`ddpg.soft_update`); both learning rates follow `agent.lr_schedule` over the run's steps;
  `agent.freeze_actor` (the reference's behaviour) never steps the actor.

Every loss and update comes from `acodm_ray.agent.ddpg` (the functions the RLlib learner uses
too): the DDPG math is written once. Each optimizer is stepped by its own network's loss only.

Transitions are (state_t, executed weights_t, vector reward = the step's per-domain alignment
scores, state_{t+1}); `state_t` is the state the previous step ended in (zeros before the first
step, like the trainer's initial state). ODM keeps learning from every step, so the warm-up's
behaviour is exactly ODM's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from acodm_ray.agent import ddpg
from acodm_ray.agent.config import AgentConfig, actor_objective, check_agent, lr_at, lr_points
from acodm_ray.agent.networks import build_networks
from acodm_ray.agent.replay import ReplayBuffer
from acodm_ray.mixers.base import Mixer
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.step_signals import StepSignals


class OnlineACODM(Mixer):
    name = "acodm-online"

    def __init__(
        self,
        domains: Sequence[str],
        natural: np.ndarray,
        state_dim: int,
        agent: AgentConfig,
        total_steps: int,
        odm_variant: str = "smoothed_mean",
        odm_alpha: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(domains)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        check_agent(agent, len(self.domains))
        self.cfg = agent
        self.state_dim = int(state_dim)
        self.total_steps = int(total_steps)
        self.seed = int(seed)
        self.odm = ODMMixer(self.domains, natural, odm_variant, odm_alpha)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor, self.critic = build_networks(agent, self.state_dim, self.num_domains)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=agent.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=agent.critic_lr)
        self.buffer = ReplayBuffer(agent.replay_capacity, self.state_dim, self.num_domains, seed)
        self.noise_rng = torch.Generator().manual_seed(seed + 1)
        self.warmup_steps = int(round(agent.warmup_fraction * self.total_steps))
        self.steps_seen = 0  # transitions observed (= target optimizer steps)
        self.num_updates = 0  # gradient updates of the agent
        self.actor_lrs = lr_points(agent, agent.actor_lr, self.total_steps)
        self.critic_lrs = lr_points(agent, agent.critic_lr, self.total_steps)
        self.targets_synced = False
        self.last_state = np.zeros(self.state_dim, dtype=np.float32)
        self.last_losses: dict[str, float] = {}

    # ------------------------------------------------------------------ acting

    @property
    def in_warmup(self) -> bool:
        return self.steps_seen < self.warmup_steps

    def _obs(self, state: np.ndarray | None) -> torch.Tensor:
        if state is None:
            state = self.last_state
        s = np.nan_to_num(
            np.asarray(state, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0
        )
        if s.shape != (self.state_dim,):
            raise ValueError(f"state has {s.shape[0]} entries, the agent expects {self.state_dim}")
        return torch.from_numpy(s).reshape(1, -1)

    @torch.no_grad()
    def greedy_weights(self, state: np.ndarray | None = None) -> np.ndarray:
        """The actor's output without exploration noise."""
        w = self.actor(self._obs(state))[0].double().numpy()
        return w / w.sum()

    @torch.no_grad()
    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        """ODM's weights during warm-up, then the actor's output with exploration noise."""
        if self.in_warmup:
            return self.odm.weights()
        w = self.actor(self._obs(state))
        w = ddpg.explore(w, self.cfg.exploration_noise, self.noise_rng)[0].double().numpy()
        return w / w.sum()

    # ------------------------------------------------------------------ learning

    def update(self, signals: StepSignals) -> None:
        next_state = np.nan_to_num(
            np.asarray(signals.state, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0
        )
        done = int(signals.step) >= self.total_steps
        warm = self.in_warmup  # this transition was chosen by the warm-up behaviour (ODM)
        self.buffer.add(
            self.last_state, signals.weights, signals.scores, next_state, done, behaviour=warm
        )
        self.odm.update(signals)
        self.steps_seen += 1
        self.last_state = next_state
        if len(self.buffer) >= self.cfg.batch_size:
            for _ in range(self.cfg.updates_per_step):
                self.learn(self._update_is_warmup(warm))

    def _update_is_warmup(self, warm_transition: bool) -> bool:
        if self.cfg.warmup_updates is None:  # the paper: warm-up losses while ODM chooses
            return warm_transition
        return self.num_updates < self.cfg.warmup_updates

    def learn(self, warmup: bool) -> dict[str, float]:
        """One gradient update of critic then actor on a replay batch; each optimizer is stepped
        by its own loss."""
        if not warmup and not self.targets_synced:
            # warm-up is over: the targets start from the (imitation-trained) online networks
            ddpg.soft_update(self.target_actor, self.actor, 1.0)
            ddpg.soft_update(self.target_critic, self.critic, 1.0)
            self.targets_synced = True
        for opt, points in ((self.actor_opt, self.actor_lrs), (self.critic_opt, self.critic_lrs)):
            for group in opt.param_groups:
                group["lr"] = lr_at(points, self.steps_seen)
        b = self.buffer.sample(self.cfg.batch_size)
        c_loss = ddpg.update_critic_loss(warmup, self.critic, self.target_actor, self.target_critic,
                                         *self._transition(b), self.cfg.gamma)  # fmt: skip
        self.critic_opt.zero_grad(set_to_none=True)
        c_loss.backward()
        self.critic_opt.step()
        # after the critic's step: the actor's loss sees the updated critic (the RLlib learner computes
        # both losses in one forward pass, before either step)
        a_loss = ddpg.update_actor_loss(warmup, self.actor, self.critic, b["obs"], b["actions"],
                                        b["behaviour"], self.cfg, b["rewards"])  # fmt: skip
        self.actor_opt.zero_grad(set_to_none=True)
        grad_norm = 0.0
        if a_loss.requires_grad:  # update_actor_loss detaches it when agent.freeze_actor
            a_loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.actor.parameters(), float("inf")))
            self.actor_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)  # nothing of the actor loss may linger
        if not warmup:
            ddpg.soft_update(self.target_actor, self.actor, self.cfg.tau)
            ddpg.soft_update(self.target_critic, self.critic, self.cfg.tau)
        self.num_updates += 1
        self.last_losses = {
            "actor_loss": a_loss.item(),
            "critic_loss": c_loss.item(),
            "warmup": float(warmup),
            "actor_grad_norm": grad_norm,
            **self._diagnostics(b),
        }
        return self.last_losses

    @staticmethod
    def _transition(b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """A replay batch's (obs, actions, rewards, next_obs, dones), in the critic losses' order."""
        return b["obs"], b["actions"], b["rewards"], b["next_obs"], b["dones"]

    def _diagnostics(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        """After an update, on its batch: what the RLlib learner logs too (iterations.jsonl)."""
        gamma, units = self.cfg.gamma, self.cfg.value_units
        with torch.no_grad():
            entropy = float(ddpg.entropy(self.actor(b["obs"])).mean())
        td = ddpg.td_error(self.critic, self.target_actor, self.target_critic, *self._transition(b),
                           gamma)  # fmt: skip
        temperature = ddpg.actor_temperature(self.cfg, b["rewards"])
        return {
            "td_error": td,
            "weight_entropy": entropy,
            "actor_lr": self.actor_opt.param_groups[0]["lr"],
            "value_spread": ddpg.value_spread(self.actor, self.critic, b["obs"], gamma, units),
            "temperature": temperature,
            "optimum_gap": ddpg.optimum_gap(
                self.actor,
                self.critic,
                b["obs"],
                temperature,
                gamma,
                units,
                actor_objective(self.cfg),
            ),  # fmt: skip
        }

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Networks, targets, optimizers, replay buffer, ODM, counters and RNGs (loads with
        torch's weights_only=True)."""
        return {
            "kind": self.name,
            "domains": list(self.domains),
            "state_dim": self.state_dim,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_actor": self.target_actor.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "buffer": self.buffer.state_dict(),
            "odm": self.odm.state_dict(),
            "noise_rng": self.noise_rng.get_state(),
            "steps_seen": self.steps_seen,
            "num_updates": self.num_updates,
            "warmup_steps": self.warmup_steps,
            "targets_synced": self.targets_synced,
            "last_state": torch.from_numpy(self.last_state.copy()),
            "last_losses": json.dumps(self.last_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.name:
            raise ValueError(f"mixer state is for {state.get('kind')!r}, not {self.name!r}")
        if list(state["domains"]) != self.domains or int(state["state_dim"]) != self.state_dim:
            raise ValueError(
                f"agent state is for domains {state['domains']} / state_dim {state['state_dim']}, "
                f"this agent has {self.domains} / {self.state_dim}"
            )
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_actor.load_state_dict(state["target_actor"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.buffer.load_state_dict(state["buffer"])
        self.odm.load_state_dict(state["odm"])
        self.noise_rng.set_state(state["noise_rng"])
        self.steps_seen = int(state["steps_seen"])
        self.num_updates = int(state["num_updates"])
        self.warmup_steps = int(state["warmup_steps"])
        self.targets_synced = bool(state["targets_synced"])
        self.last_state = state["last_state"].numpy().copy()
        self.last_losses = json.loads(state["last_losses"])
