"""`--algo acodm|ppo|sac|appo` -> a ready RLlib AlgorithmConfig for the data-mixing env.

Every resource request (env runners, envs per runner, CPUs/GPUs, learners) comes from RLConfig,
so a cluster with an autoscaler scales by configuration alone. PPO, SAC and APPO act on the env's
Box(0, 1, K) action through RLlib's default normalize_actions=True ([-1, 1] mapped onto [0, 1];
the env renormalises (a + eps) / sum(a + eps)); AC-ODM's softmax actor needs no such mapping.
"""

from __future__ import annotations

from typing import Any, get_args

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.sac import SACConfig
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from acodm_ray.agent.config import AgentConfig
from acodm_ray.config import RLConfig
from acodm_ray.config_jobs import Algo
from policies.acodm.acodm import acodm_config_from
from policies.callbacks import MixingMetrics, SamplingClock

ALGOS = get_args(Algo)  # rl.algo's values

# Seconds between restarts of a failed env runner (RLlib's default, 60 s, stalls short runs).
ENV_RUNNER_RESTART_DELAY_S = 5.0


def _model_config(agent_cfg: AgentConfig) -> DefaultModelConfig:
    """The baselines get the actor's width/depth (small presets give small models)."""
    return DefaultModelConfig(
        fcnet_hiddens=[agent_cfg.actor_hidden] * agent_cfg.actor_layers,
        fcnet_activation="relu",
        head_fcnet_hiddens=[],
    )


def _algo_base(
    algo: str, agent_cfg: AgentConfig, rl_cfg: RLConfig, warmup_updates: int
) -> AlgorithmConfig:
    if algo == "acodm":
        total = rl_cfg.iterations * rl_cfg.min_sample_timesteps_per_iteration
        return acodm_config_from(agent_cfg, warmup_updates=warmup_updates, total_env_steps=total)
    if algo == "ppo":
        batch = rl_cfg.train_batch_size
        return (
            PPOConfig()
            .training(
                gamma=agent_cfg.gamma,
                lr=agent_cfg.actor_lr,
                train_batch_size_per_learner=batch,
                minibatch_size=max(1, min(batch, agent_cfg.batch_size)),
                num_epochs=4,
            )
            .rl_module(model_config=_model_config(agent_cfg))
        )
    if algo == "sac":
        return (
            SACConfig()
            .training(
                gamma=agent_cfg.gamma,
                actor_lr=agent_cfg.actor_lr,
                critic_lr=agent_cfg.critic_lr,
                replay_buffer_config={
                    "type": "PrioritizedEpisodeReplayBuffer",
                    "capacity": agent_cfg.replay_capacity,
                },
                train_batch_size_per_learner=agent_cfg.batch_size,
                num_steps_sampled_before_learning_starts=agent_cfg.batch_size,
            )
            .rl_module(model_config=_model_config(agent_cfg))
        )
    if algo == "appo":
        return (
            APPOConfig()
            .training(
                gamma=agent_cfg.gamma,
                lr=agent_cfg.actor_lr,
                train_batch_size_per_learner=rl_cfg.train_batch_size,
                # A plain learner queue: each batch trained on once, in order. RLlib's default circular
                # buffer re-samples batches with an unseeded generator and goes on updating after
                # train() returns, so an export could miss updates (policies.export.wait_for_queued_updates
                # drains the plain queue; the buffer cannot be drained).
                use_circular_buffer=False,
            )
            .rl_module(model_config=_model_config(agent_cfg))
        )
    raise ValueError(f"unknown algo {algo!r}; valid names are {', '.join(ALGOS)}")


def build_algo_config(
    algo: str,
    env: str | type,
    env_config: dict[str, Any],
    agent_cfg: AgentConfig,
    rl_cfg: RLConfig,
    seed: int,
    *,
    warmup_updates: int = 0,
) -> AlgorithmConfig:
    """The AlgorithmConfig of `algo` on `env` (a registered name or a gymnasium.Env class).

    `warmup_updates` only matters for acodm (learner updates with the warm-up losses)."""
    if not isinstance(algo, str) or algo.lower() not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; valid names are {', '.join(ALGOS)}")
    algo = algo.lower()
    cfg = _algo_base(algo, agent_cfg, rl_cfg, warmup_updates)
    cfg.environment(env=env, env_config=dict(env_config))
    cfg.env_runners(
        num_env_runners=rl_cfg.num_env_runners,
        num_envs_per_env_runner=rl_cfg.num_envs_per_env_runner,
        num_cpus_per_env_runner=rl_cfg.num_cpus_per_env_runner,
        num_gpus_per_env_runner=rl_cfg.num_gpus_per_env_runner,
        rollout_fragment_length=rl_cfg.rollout_fragment_length,
    )
    cfg.learners(num_learners=rl_cfg.num_learners, num_gpus_per_learner=rl_cfg.num_gpus_per_learner)
    cfg.reporting(
        min_time_s_per_iteration=rl_cfg.min_time_s_per_iteration,
        min_sample_timesteps_per_iteration=rl_cfg.min_sample_timesteps_per_iteration,
    )
    cfg.fault_tolerance(
        restart_failed_env_runners=True,
        delay_between_env_runner_restarts_s=ENV_RUNNER_RESTART_DELAY_S,
    )
    cfg.debugging(seed=seed)
    cfg.callbacks([MixingMetrics, SamplingClock])
    if algo == "acodm" and agent_cfg.updates_per_step != 1:
        # DQN's loop: training_intensity = replayed / sampled steps (see dqn.calculate_rr_weights).
        sampled = (
            cfg.get_rollout_fragment_length()
            * rl_cfg.num_envs_per_env_runner
            * max(rl_cfg.num_env_runners + 1, 1)
        )
        cfg.training(
            training_intensity=agent_cfg.updates_per_step * cfg.total_train_batch_size / sampled
        )
    return cfg
