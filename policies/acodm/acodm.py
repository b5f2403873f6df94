"""AC-ODM as an RLlib algorithm (new API stack): DDPG with a vector critic and an ODM warm-up.

SAC is the template (RLlib has no DDPG any more): `ACODM(SAC)` reuses DQN's off-policy loop
(sample -> episode replay buffer -> one learner update per sampled step -> weight sync) and
`ACODMConfig(SACConfig)` its replay and learner-connector plumbing (NEXT_OBS column). What is
ours: the module (softmax actor + vector critic), the learner (one optimizer per network, warm-up
then DDPG, targets hard-copied at the end of warm-up) and a learner connector that brings the
per-domain reward vector and the executed weights into the train batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.algorithms.sac.sac import SAC, SACConfig
from ray.rllib.connectors.learner import AddColumnsFromEpisodesToTrainBatch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from acodm_ray.agent.config import AgentConfig, check_agent, lr_points
from policies.acodm.connectors import AddVectorRewardsAndExecutedActions
from policies.acodm.learner import ACODMTorchLearner
from policies.acodm.replay import SeededEpisodeReplayBuffer
from policies.acodm.rl_module import ACODMTorchRLModule

_DEFAULTS = AgentConfig()


class ACODMConfig(SACConfig):
    """AC-ODM settings; the defaults are AgentConfig's (this project's working AC-ODM; the paper's
    settings are the `acodm-paper` method's, acodm_ray/compare/methods.py)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or ACODM)
        # DDPG: one deterministic actor, one (vector) critic, their targets.
        self.twin_q = False
        self.gamma = _DEFAULTS.gamma
        self.tau = _DEFAULTS.tau
        self.actor_lr = _DEFAULTS.actor_lr
        self.critic_lr = _DEFAULTS.critic_lr
        self.lr = None
        self.n_step = 1
        self.replay_buffer_config = {
            "type": "EpisodeReplayBuffer",
            "capacity": _DEFAULTS.replay_capacity,
        }
        self.train_batch_size_per_learner = _DEFAULTS.batch_size
        self.num_steps_sampled_before_learning_starts = _DEFAULTS.batch_size
        # AC-ODM-specific: the agent's hyperparameters, one dataclass handed whole to the RLModule
        # (its model_config); the fields RLlib has its own names for (gamma, tau, lrs, batch size,
        # replay capacity) are set above from the same defaults, and RLlib's win (see model_config).
        self.agent = AgentConfig()
        self.warmup_updates = 0
        # The softmax output is already a valid Box(0, 1) action: no [-1, 1] unsquashing/clipping.
        self.normalize_actions = False
        self.clip_actions = False

    @override(SACConfig)
    def training(
        self,
        *,
        agent: AgentConfig | dict[str, Any] | None = NotProvided,
        warmup_updates: int | None = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """SAC's training() plus `agent` (an AgentConfig, or a dict of its fields to change) and
        `warmup_updates` (learner updates with the imitation/warm-up losses before DDPG)."""
        super().training(**kwargs)
        if isinstance(agent, dict):
            unknown = sorted(set(agent) - {f.name for f in dataclasses.fields(AgentConfig)})
            if unknown:
                raise ValueError(f"unknown AgentConfig field(s) {unknown}")
            agent = dataclasses.replace(self.agent, **agent)
        if agent is not NotProvided:
            self.agent = agent
        if warmup_updates is not NotProvided:
            self.warmup_updates = warmup_updates
        return self

    @override(SACConfig)
    def validate(self) -> None:
        super().validate()
        if self.normalize_actions or self.clip_actions:
            raise ValueError(
                "AC-ODM's actor outputs softmax weights that already lie in the Box(0, 1) action "
                "space: set env_runners(normalize_actions=False, clip_actions=False) "
                f"(got normalize_actions={self.normalize_actions}, clip_actions={self.clip_actions})"
            )
        if self.n_step != 1:
            raise ValueError(
                f"AC-ODM uses 1-step transitions (vector rewards); got n_step={self.n_step}"
            )
        if self.twin_q:
            raise ValueError("AC-ODM has a single vector critic; twin_q must be False")
        for name in ("actor_hidden", "actor_layers", "critic_hidden", "critic_layers"):
            value = getattr(self.agent, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"agent.{name} must be a positive integer, got {value!r}")
        check_agent(self.agent)
        if not isinstance(self.warmup_updates, int) or self.warmup_updates < 0:
            raise ValueError(f"warmup_updates must be an integer >= 0, got {self.warmup_updates!r}")
        if self.agent.exploration_noise < 0:
            raise ValueError(
                f"agent.exploration_noise must be >= 0, got {self.agent.exploration_noise}"
            )
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")

    @override(SACConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=ACODMTorchRLModule)

    @override(SACConfig)
    def get_default_learner_class(self) -> type:
        return ACODMTorchLearner

    @override(SACConfig)
    def build_learner_connector(self, input_observation_space, input_action_space, device=None):
        pipeline = super().build_learner_connector(
            input_observation_space=input_observation_space,
            input_action_space=input_action_space,
            device=device,
        )
        # After AddObservationsFromEpisodesToBatch: in learner mode it renames every sampled
        # episode's id to a unique one ("<id>_<index>"), and batch rows are grouped by that id. A
        # piece running earlier would group several 1-step samples of one episode under one key,
        # misaligning its rows with OBS/NEXT_OBS. Before AddColumnsFromEpisodesToTrainBatch, so
        # that one finds ACTIONS already set to the executed weights and leaves them alone.
        piece = AddVectorRewardsAndExecutedActions()
        if pipeline[AddColumnsFromEpisodesToTrainBatch]:
            pipeline.insert_before(AddColumnsFromEpisodesToTrainBatch, piece)
        else:  # default pieces switched off: the user's pipeline comes first
            pipeline.append(piece)
        return pipeline

    @property
    @override(AlgorithmConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        # RLlib's own gamma wins over the dataclass's: `.training(gamma=...)` does what RLlib users expect.
        return {
            "agent": dataclasses.asdict(dataclasses.replace(self.agent, gamma=self.gamma)),
            "warmup_updates": self.warmup_updates,
        }


REPLAY_STATE = "acodm_replay_buffer"  # the replay buffer's key in a whole-algorithm checkpoint


class ACODM(SAC):
    """DQN's off-policy training loop with the AC-ODM module and learner; its replay buffer samples
    from a generator seeded with `config.seed` (policies/acodm/replay.py) and is part of the
    algorithm's checkpoints (RLlib 2.60's new API stack leaves it out: a resumed proxy stage would
    start from an empty buffer and replay other batches than an uninterrupted one)."""

    @classmethod
    @override(SAC)
    def get_default_config(cls) -> ACODMConfig:
        return ACODMConfig()

    @override(SAC)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if (
            components is None and self.local_replay_buffer is not None
        ):  # whole-algorithm state only
            state[REPLAY_STATE] = self.local_replay_buffer.get_state()
        return state

    @override(SAC)
    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if REPLAY_STATE in state and self.local_replay_buffer is not None:
            self.local_replay_buffer.set_state(state[REPLAY_STATE])

    @override(SAC)
    def _create_local_replay_buffer_if_necessary(self, config):
        buffer_cfg = dict(config.get("replay_buffer_config") or {})
        if buffer_cfg.pop("type", None) != "EpisodeReplayBuffer":
            return super()._create_local_replay_buffer_if_necessary(config)
        return SeededEpisodeReplayBuffer(
            seed=int(self.config.seed or 0),
            metrics_num_episodes_for_smoothing=self.config.metrics_num_episodes_for_smoothing,
            **buffer_cfg,
        )


def acodm_config_from(
    agent_cfg: AgentConfig,
    *,
    warmup_updates: int = 0,
    learning_starts: int | None = None,
    total_env_steps: int = 0,
) -> ACODMConfig:
    """An ACODMConfig carrying the agent's hyperparameters. `warmup_updates` is the number of
    learner updates trained with the warm-up losses (`agent_cfg.warmup_updates`, or for the
    paper's setting the job derives it from `agent_cfg.warmup_fraction`); `learning_starts` is the
    number of env steps sampled before the first update (default: one batch); `total_env_steps` is
    the horizon of `agent_cfg.lr_schedule`."""
    cfg = ACODMConfig()
    cfg.training(
        gamma=agent_cfg.gamma,
        tau=agent_cfg.tau,
        actor_lr=_schedule(lr_points(agent_cfg, agent_cfg.actor_lr, total_env_steps)),
        critic_lr=_schedule(lr_points(agent_cfg, agent_cfg.critic_lr, total_env_steps)),
        replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": agent_cfg.replay_capacity},
        train_batch_size_per_learner=agent_cfg.batch_size,
        num_steps_sampled_before_learning_starts=(
            agent_cfg.batch_size if learning_starts is None else learning_starts
        ),
        agent=agent_cfg,
        warmup_updates=warmup_updates,
    )
    return cfg


def _schedule(points: list[list[float]]) -> float | list[list[float]]:
    """A constant lr as a number, a schedule as RLlib's [[timestep, value], ...] list."""
    return points[0][1] if len(points) == 1 else points
