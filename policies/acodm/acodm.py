"""AC-ODM as an RLlib algorithm (new API stack): DDPG with a vector critic and an ODM warm-up.

SAC is the template (RLlib has no DDPG any more): `ACODM(SAC)` reuses DQN's off-policy loop
(sample -> episode replay buffer -> one learner update per sampled step -> weight sync) and
`ACODMConfig(SACConfig)` its replay and learner-connector plumbing (NEXT_OBS column). What is
ours: the module (softmax actor + vector critic), the learner (one optimizer per network, warm-up
then DDPG, targets hard-copied at the end of warm-up) and a learner connector that brings the
per-domain reward vector and the executed weights into the train batch.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.algorithms.sac.sac import SAC, SACConfig
from ray.rllib.connectors.learner import AddColumnsFromEpisodesToTrainBatch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.config import lr_points
from policies.acodm.connectors import AddVectorRewardsAndExecutedActions
from policies.acodm.replay import SeededEpisodeReplayBuffer
from policies.acodm.rl_module import AGENT_MODEL_KEYS, ACODMTorchRLModule

_PAPER = AgentConfig()


class ACODMConfig(SACConfig):
    """AC-ODM settings; defaults are the paper's (AgentConfig)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or ACODM)
        # DDPG: one deterministic actor, one (vector) critic, their targets.
        self.twin_q = False
        self.gamma = _PAPER.gamma
        self.tau = _PAPER.tau
        self.actor_lr = _PAPER.actor_lr
        self.critic_lr = _PAPER.critic_lr
        self.lr = None
        self.n_step = 1
        self.replay_buffer_config = {"type": "EpisodeReplayBuffer", "capacity": _PAPER.replay_capacity}
        self.train_batch_size_per_learner = _PAPER.batch_size
        self.num_steps_sampled_before_learning_starts = _PAPER.batch_size
        # AC-ODM-specific.
        self.actor_hidden = _PAPER.actor_hidden
        self.actor_layers = _PAPER.actor_layers
        self.critic_hidden = _PAPER.critic_hidden
        self.critic_layers = _PAPER.critic_layers
        self.exploration_noise = _PAPER.exploration_noise
        self.warmup_updates = 0
        self.actor_objective = _PAPER.actor_objective
        self.weight_floor = _PAPER.weight_floor
        self.entropy_coef = _PAPER.entropy_coef
        self.value_units = _PAPER.value_units
        self.imitate_odm_only = _PAPER.imitate_odm_only
        self.freeze_actor = _PAPER.freeze_actor
        # The softmax output is already a valid Box(0, 1) action: no [-1, 1] unsquashing/clipping.
        self.normalize_actions = False
        self.clip_actions = False

    @override(SACConfig)
    def training(
        self,
        *,
        actor_hidden: int | None = NotProvided,
        actor_layers: int | None = NotProvided,
        critic_hidden: int | None = NotProvided,
        critic_layers: int | None = NotProvided,
        exploration_noise: float | None = NotProvided,
        warmup_updates: int | None = NotProvided,
        actor_objective: str | None = NotProvided,
        weight_floor: float | None = NotProvided,
        entropy_coef: float | None = NotProvided,
        value_units: str | None = NotProvided,
        imitate_odm_only: bool | None = NotProvided,
        freeze_actor: bool | None = NotProvided,
        **kwargs: Any,
    ) -> Self:
        """SAC's training() plus the network sizes, exploration noise, warm-up length
        (`warmup_updates`: learner updates with imitation/warm-up losses before DDPG) and the
        AgentConfig switches of the same names (acodm_ray/agent/config.py)."""
        super().training(**kwargs)
        for name, value in (
            ("actor_hidden", actor_hidden),
            ("actor_layers", actor_layers),
            ("critic_hidden", critic_hidden),
            ("critic_layers", critic_layers),
            ("exploration_noise", exploration_noise),
            ("warmup_updates", warmup_updates),
            ("actor_objective", actor_objective),
            ("weight_floor", weight_floor),
            ("entropy_coef", entropy_coef),
            ("value_units", value_units),
            ("imitate_odm_only", imitate_odm_only),
            ("freeze_actor", freeze_actor),
        ):
            if value is not NotProvided:
                setattr(self, name, value)
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
            raise ValueError(f"AC-ODM uses 1-step transitions (vector rewards); got n_step={self.n_step}")
        if self.twin_q:
            raise ValueError("AC-ODM has a single vector critic; twin_q must be False")
        for name in ("actor_hidden", "actor_layers", "critic_hidden", "critic_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.warmup_updates, int) or self.warmup_updates < 0:
            raise ValueError(f"warmup_updates must be an integer >= 0, got {self.warmup_updates!r}")
        if self.exploration_noise < 0:
            raise ValueError(f"exploration_noise must be >= 0, got {self.exploration_noise}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")

    @override(SACConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=ACODMTorchRLModule)

    @override(SACConfig)
    def get_default_learner_class(self) -> type:
        from policies.acodm.learner import ACODMTorchLearner

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
        return {key: getattr(self, key) for key in AGENT_MODEL_KEYS}


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
        if components is None and self.local_replay_buffer is not None:  # whole-algorithm state only
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
        actor_hidden=agent_cfg.actor_hidden,
        actor_layers=agent_cfg.actor_layers,
        critic_hidden=agent_cfg.critic_hidden,
        critic_layers=agent_cfg.critic_layers,
        exploration_noise=agent_cfg.exploration_noise,
        warmup_updates=warmup_updates,
        actor_objective=agent_cfg.actor_objective,
        weight_floor=agent_cfg.weight_floor,
        entropy_coef=agent_cfg.entropy_coef,
        value_units=agent_cfg.value_units,
        imitate_odm_only=agent_cfg.imitate_odm_only,
        freeze_actor=agent_cfg.freeze_actor,
    )
    return cfg


def _schedule(points: list[list[float]]) -> float | list[list[float]]:
    """A constant lr as a number, a schedule as RLlib's [[timestep, value], ...] list."""
    return points[0][1] if len(points) == 1 else points
