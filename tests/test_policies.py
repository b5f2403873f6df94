"""The RLlib side: AC-ODM algorithm (module, learner, connector), the registry, export.

Runs on a toy env with DataMixingEnv's interface (tests/toy_env.py), one Ray session (conftest),
no env-runner or learner actors (num_env_runners=0, num_learners=0) and tiny networks.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from toy_env import ToyMixEnv

from acodm_ray.agent.config import AgentConfig, lr_points
from acodm_ray.agent.policy_file import load_policy
from acodm_ray.config import RLConfig
from policies.acodm.connectors import BEHAVIOUR_WARMUP
from policies.acodm.rl_module import VECTOR_REWARDS
from policies.export import export_actor
from policies.registry import ALGOS, build_algo_config

K, L = 3, 2
ENV_CONFIG = {"num_domains": K, "num_tracked": L, "max_steps": 12, "warmup_steps": 4}
AGENT = AgentConfig(
    actor_hidden=32,
    actor_layers=2,
    critic_hidden=32,
    critic_layers=2,
    batch_size=8,
    replay_capacity=500,
)
WARMUP_UPDATES = 5
STEPS_PER_ITER = 24


def make_algo(
    algo: str = "acodm", warmup_updates: int = WARMUP_UPDATES, steps: int = STEPS_PER_ITER
):
    cfg = build_algo_config(
        algo, ToyMixEnv, ENV_CONFIG, AGENT, RLConfig(), seed=0, warmup_updates=warmup_updates
    )
    cfg.reporting(min_sample_timesteps_per_iteration=steps)
    return cfg.build_algo()


def learner_of(algo):
    return algo.learner_group._learner  # local learner (num_learners=0)


def module_of(algo):
    return learner_of(algo).module[DEFAULT_MODULE_ID].unwrapped()


def snapshot(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def equal(a: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, net.parameters()))


def replay_sample(algo, n: int = 8):
    return algo.local_replay_buffer.sample(
        num_items=n, n_step=1, gamma=algo.config.gamma, sample_episodes=True
    )


def one_update(algo) -> None:
    learner_of(algo).update(
        episodes=replay_sample(algo), timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: 0}
    )


@pytest.fixture(scope="module")
def trained(ray_session):
    algo = make_algo()
    results = [algo.train() for _ in range(2)]
    yield algo, results
    algo.stop()


def test_acodm_trains_two_iterations(trained):
    algo, results = trained
    assert results[-1]["training_iteration"] == 2
    stats = results[-1]["learners"][DEFAULT_MODULE_ID]
    assert np.isfinite(stats["actor_loss"]) and np.isfinite(stats["critic_loss"])
    assert stats["num_updates"] > WARMUP_UPDATES  # warm-up over, DDPG running
    assert stats["in_warmup"] == 0.0
    assert stats["target_hard_copies"] == 1
    assert int(module_of(algo).num_updates) == stats["num_updates"]
    # The env runner's copy is inference-only: the actor, no critic, no targets.
    runner_module = algo.get_module()
    assert hasattr(runner_module, "actor") and not hasattr(runner_module, "critic")
    assert not hasattr(runner_module, "target_actor")


def test_vector_reward_is_the_transitions_own_info(trained):
    algo, _ = trained
    episodes = replay_sample(algo, 16)
    learner = learner_of(algo)
    batch = learner._learner_connector(
        rl_module=learner.module, batch={}, episodes=episodes, shared_data={}
    )[DEFAULT_MODULE_ID]
    # Rows are grouped by episode id, not in sampling order: match each row to its transition
    # by (s, s'). Each sampled 1-step episode holds infos [info_t, info_t+1].
    by_transition = {
        (ep.get_observations(0).tobytes(), ep.get_observations(-1).tobytes()): ep for ep in episodes
    }
    obs, next_obs = np.asarray(batch[Columns.OBS]), np.asarray(batch[Columns.NEXT_OBS])
    rows = [by_transition[(o.tobytes(), n.tobytes())] for o, n in zip(obs, next_obs)]
    own = [ep.get_infos(-1) for ep in rows]  # returned with s': the transition's own info
    prev = [ep.get_infos(0) for ep in rows]  # what the stock infos connector would take
    vec = np.asarray(batch[VECTOR_REWARDS])
    assert vec.shape == (len(episodes), K) and vec.dtype == np.float32
    np.testing.assert_array_equal(vec, np.stack([i["scores"] for i in own]))
    # The info's losses are the first K entries of s' (same step), not of s.
    np.testing.assert_array_equal(next_obs[:, :K], np.stack([i["losses"] for i in own]))
    assert not np.array_equal(vec, np.stack([i.get("scores", np.zeros(K)) for i in prev]))
    # ACTIONS are the executed weights; during the env's warm-up they are its mixer's.
    np.testing.assert_array_equal(
        np.asarray(batch[Columns.ACTIONS]), np.stack([i["weights"] for i in own])
    )
    np.testing.assert_array_equal(
        np.asarray(batch[BEHAVIOUR_WARMUP]), np.array([i["warmup"] for i in own])
    )
    # The scalar reward is the weighted score sum_i w_i s_i of the same transition.
    np.testing.assert_allclose(
        np.asarray(batch[Columns.REWARDS]),
        (vec * np.asarray(batch[Columns.ACTIONS])).sum(-1),
        rtol=1e-5,
    )


def test_ddpg_update_trains_actor_and_critic(trained):
    algo, _ = trained
    mod = module_of(algo)
    assert not mod.in_warmup()
    a0, c0 = snapshot(mod.actor), snapshot(mod.critic)
    ta0, tc0 = snapshot(mod.target_actor), snapshot(mod.target_critic)
    one_update(algo)
    assert not equal(a0, mod.actor), "the actor was not updated by the DDPG step"
    assert not equal(c0, mod.critic)
    # Soft targets: target' = tau * online' + (1 - tau) * target.
    tau = algo.config.tau
    for before, online, after in zip(
        ta0 + tc0,
        [*mod.actor.parameters(), *mod.critic.parameters()],
        [*mod.target_actor.parameters(), *mod.target_critic.parameters()],
    ):
        torch.testing.assert_close(after, tau * online + (1 - tau) * before)


def test_each_optimizer_gets_only_its_own_loss_gradient(trained):
    algo, _ = trained
    learner, mod = learner_of(algo), module_of(algo)
    batch = learner._learner_connector(
        rl_module=learner.module, batch={}, episodes=replay_sample(algo), shared_data={}
    )
    fwd = learner.module.forward_train(batch)
    losses = learner.compute_losses(fwd_out=fwd, batch=batch)
    grads = learner.compute_gradients(losses)
    out = fwd[DEFAULT_MODULE_ID]
    # Independent gradients of each loss w.r.t. its own network.
    expect_actor = torch.autograd.grad(
        out["actor_loss"], list(mod.actor.parameters()), retain_graph=True
    )
    expect_critic = torch.autograd.grad(out["critic_loss"], list(mod.critic.parameters()))
    for p, g in zip(mod.actor.parameters(), expect_actor):
        torch.testing.assert_close(grads[p], g)
    for p, g in zip(mod.critic.parameters(), expect_critic):
        torch.testing.assert_close(grads[p], g)
    names = {n for n, _ in learner.get_optimizers_for_module(DEFAULT_MODULE_ID)}
    assert names == {"actor", "critic"}


def test_targets_hard_copied_at_end_of_warmup(ray_session):
    algo = make_algo(warmup_updates=3)
    try:
        # Fill the replay buffer without any update (learning starts after 8 steps).
        algo.local_replay_buffer.add(algo.env_runner.sample(num_timesteps=16, random_actions=False))
        mod = module_of(algo)
        with torch.no_grad():  # make the targets visibly different from the online nets
            for p in [*mod.target_actor.parameters(), *mod.target_critic.parameters()]:
                p.add_(1.0)
        t0 = snapshot(mod.target_actor) + snapshot(mod.target_critic)
        a0 = snapshot(mod.actor)
        for _ in range(2):
            assert mod.in_warmup()
            one_update(algo)
        assert not equal(a0, mod.actor)  # imitation trains the actor during warm-up
        targets = [*mod.target_actor.parameters(), *mod.target_critic.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(t0, targets))  # untouched in warm-up
        one_update(algo)  # the last warm-up update
        assert not mod.in_warmup()
        for online, target in ((mod.actor, mod.target_actor), (mod.critic, mod.target_critic)):
            assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))
        one_update(algo)  # first DDPG update: soft, so targets now lag the online nets
        assert not all(
            torch.equal(a, b) for a, b in zip(mod.actor.parameters(), mod.target_actor.parameters())
        )
    finally:
        algo.stop()


def test_export_matches_forward_inference(trained, tmp_path):
    algo, _ = trained
    out = export_actor(
        algo,
        tmp_path / "policy",
        [f"d{i}" for i in range(K)],
        {"num_domains": K, "num_tracked": L},
        {"algo": "acodm"},
    )
    actor, meta = load_policy(out)
    assert meta["domains"] == ["d0", "d1", "d2"] and meta["state_dim"] == 3 * K + 2 * L + 1
    obs = torch.as_tensor(
        np.stack([ToyMixEnv(ENV_CONFIG).reset(seed=s)[0] for s in range(3)])
        + np.random.default_rng(0).normal(size=(3, 3 * K + 2 * L + 1)),
        dtype=torch.float32,
    )
    with torch.no_grad():
        exported = actor(obs)
    learner_out = module_of(algo).forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    # Earlier tests updated the learner by hand; the env runner gets weights at the next sync.
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )
    runner_out = algo.get_module().forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    assert torch.equal(exported, learner_out)
    assert torch.equal(exported, runner_out)
    torch.testing.assert_close(exported.sum(-1), torch.ones(3))


def _leaves(tree) -> list[tuple[str, object]]:
    """Every leaf (tensor, array, number, string) of a nested optimizer state, keyed by its path."""
    if isinstance(tree, dict):
        return [(f"{k}/{p}", t) for k in sorted(tree, key=str) for p, t in _leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [(f"{i}/{p}", t) for i, v in enumerate(tree) for p, t in _leaves(v)]
    return [("", tree)]


def _same(x, y) -> bool:
    if isinstance(x, (torch.Tensor, np.ndarray)) or isinstance(y, (torch.Tensor, np.ndarray)):
        return torch.equal(torch.as_tensor(x), torch.as_tensor(y))
    return x == y


def test_checkpoint_restore_continues(trained, tmp_path):
    """A restored algorithm holds the same networks (targets included), the same warm-up progress,
    the same Adam moments and step counts of both optimizers, the same sampling counters, and
    trains on from there."""
    algo, _ = trained
    path = algo.save_to_path(str(tmp_path / "ckpt"))
    restored = Algorithm.from_checkpoint(path)
    try:
        assert restored.iteration == algo.iteration
        old, new = module_of(algo), module_of(restored)
        assert int(new.num_updates) == int(old.num_updates) > 0  # warm-up progress survives
        for name in ("actor", "critic", "target_actor", "target_critic"):
            a, b = getattr(old, name), getattr(new, name)
            assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters())), name
        # both optimizers' state (Adam moments, step counts) came back, not fresh optimizers
        old_opt = learner_of(algo).get_state(components="optimizer")["optimizer"]
        new_opt = learner_of(restored).get_state(components="optimizer")["optimizer"]
        assert len(old_opt) == 2 and set(old_opt) == set(new_opt)
        for opt_name in old_opt:
            a, b = _leaves(old_opt[opt_name]), _leaves(new_opt[opt_name])
            assert [k for k, _ in a] == [k for k, _ in b] and any("exp_avg" in k for k, _ in a), (
                opt_name
            )
            for (k, x), (_, y) in zip(a, b):
                assert _same(x, y), f"{opt_name}: {k}"
        # the lifetime counters the reports (and the env runners' schedules) are based on
        assert (
            restored.metrics.peek(("env_runners", NUM_ENV_STEPS_SAMPLED_LIFETIME))
            == algo.metrics.peek(("env_runners", NUM_ENV_STEPS_SAMPLED_LIFETIME))
            > 0
        )
        # the replay buffer came back, contents and sampler: the next batch is the one the original draws
        old_buf, new_buf = algo.local_replay_buffer, restored.local_replay_buffer
        assert new_buf.get_num_timesteps() == old_buf.get_num_timesteps() > 0
        a, b = replay_sample(algo), replay_sample(restored)
        assert [e.id_ for e in a] == [e.id_ for e in b]
        assert all(np.array_equal(x.get_observations(), y.get_observations()) for x, y in zip(a, b))
        result = restored.train()
        assert result["training_iteration"] == algo.iteration + 1
        assert result["learners"][DEFAULT_MODULE_ID]["in_warmup"] == 0.0
        assert int(new.num_updates) > int(old.num_updates)
    finally:
        restored.stop()


@pytest.mark.parametrize("name", ["ppo", "sac", "appo"])
def test_baselines_train_on_the_env(ray_session, name, tmp_path):
    algo = make_algo(name, steps=16)
    try:
        results = [algo.train() for _ in range(2)]
        assert results[-1]["training_iteration"] == 2
        assert results[-1]["env_runners"]["num_env_steps_sampled_lifetime"] > 0
        assert results[-1]["learners"][DEFAULT_MODULE_ID]["num_module_steps_trained_lifetime"] > 0
        with pytest.raises(ValueError, match="acodm only"):
            export_actor(algo, tmp_path / "p", ["a", "b", "c"], {}, {})
    finally:
        algo.stop()


def test_unknown_algo_refused():
    assert ALGOS == ("acodm", "ppo", "sac", "appo")
    with pytest.raises(ValueError, match="acodm, ppo, sac, appo"):
        build_algo_config("ddpg", ToyMixEnv, ENV_CONFIG, AGENT, RLConfig(), seed=0)


def test_acodm_config_refuses_action_normalisation():
    cfg = build_algo_config("acodm", ToyMixEnv, ENV_CONFIG, AGENT, RLConfig(), seed=0)
    assert cfg.normalize_actions is False and cfg.clip_actions is False
    assert (cfg.gamma, cfg.tau) == (0.95, 0.001)
    total = RLConfig().iterations * RLConfig().min_sample_timesteps_per_iteration
    assert cfg.actor_lr == lr_points(AGENT, 1e-4, total) and cfg.critic_lr == lr_points(
        AGENT, 1e-4, total
    )
    constant = build_algo_config(
        "acodm",
        ToyMixEnv,
        ENV_CONFIG,
        dataclasses.replace(AGENT, lr_schedule="constant"),
        RLConfig(),
        seed=0,
    )
    assert (constant.actor_lr, constant.critic_lr) == (1e-4, 1e-4)
    assert cfg.replay_buffer_config["capacity"] == 500 and cfg.train_batch_size_per_learner == 8
    cfg.environment(normalize_actions=True)
    with pytest.raises(ValueError, match="normalize_actions"):
        cfg.validate()


def test_connector_demands_vector_scores():
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from policies.acodm.connectors import AddVectorRewardsAndExecutedActions

    obs = np.zeros(3 * K + 2 * L + 1, np.float32)
    episode = SingleAgentEpisode(
        observations=[obs, obs],
        actions=[np.ones(K, np.float32) / K],
        rewards=[0.0],
        infos=[{}, {"weights": np.ones(K) / K}],
        len_lookback_buffer=0,
    )
    with pytest.raises(KeyError, match="scores"):
        AddVectorRewardsAndExecutedActions()(rl_module=None, batch={}, episodes=[episode])


def test_every_agent_switch_reaches_the_rl_module():
    """The whole AgentConfig arrives in the module's model_config and in the module built from it,
    with the config's values, not the defaults: a switch dropped on the way would silently train
    the default."""
    import gymnasium as gym

    from policies.acodm.rl_module import ACODMTorchRLModule

    changed = dataclasses.replace(
        AGENT,
        gamma=0.5,
        actor_objective="mean",
        weight_floor=0.02,
        entropy_coef=0.3,
        value_units="horizon",
        imitate_odm_only=False,
        freeze_actor=True,
        exploration_noise=0.01,
    )
    cfg = build_algo_config(
        "acodm", ToyMixEnv, ENV_CONFIG, changed, RLConfig(), seed=0, warmup_updates=7
    )
    model = cfg.model_config
    assert AgentConfig(**model["agent"]) == changed
    assert model["warmup_updates"] == 7
    module = ACODMTorchRLModule(
        observation_space=gym.spaces.Box(-1.0, 1.0, (5,)),
        action_space=gym.spaces.Box(0.0, 1.0, (K,)),
        model_config=model,
    )
    assert module.agent == changed and module.warmup_updates == 7
    assert module.actor.floor == pytest.approx(0.02)
    # RLlib's own gamma is the one the module's losses use
    assert AgentConfig(**cfg.copy().training(gamma=0.9).model_config["agent"]).gamma == 0.9
