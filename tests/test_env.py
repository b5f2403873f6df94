"""DataMixingEnv: Gymnasium contract, action mapping, warm-up, reward, NaN handling."""

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from acodm_ray.config import to_dict
from envs import GYM_ID, DataMixingEnv, action_to_weights, register
from tests.conftest import tiny_config


def env_config(warmup=0, mapping="simplex", **sections):
    cfg = tiny_config(train={"steps": 4, "grad_accum": 4}, **sections)
    return {"experiment": to_dict(cfg), "warmup_decisions": warmup, "action_mapping": mapping}


@pytest.fixture(scope="module")
def env(tiny_prepared):
    return DataMixingEnv(env_config())


def test_action_mappings():
    np.testing.assert_allclose(action_to_weights([0.2, 0.3, 0.5], eps=0), [0.2, 0.3, 0.5])
    w = action_to_weights([-1.0, 0.0, 3.0], eps=1e-6)
    assert w.sum() == pytest.approx(1) and w[0] == w[1] > 0
    np.testing.assert_allclose(action_to_weights([0.0, np.log(3.0)], "softmax"), [0.25, 0.75])
    with pytest.raises(ValueError, match="non-finite"):
        action_to_weights([np.nan, 1.0])
    with pytest.raises(ValueError, match="unknown action mapping"):
        action_to_weights([1.0], "cube")


def test_action_mapping_of_a_batch_is_row_for_row_the_single_mapping():
    """Exported policies map a batch [B, K] with the env's own function: each row must give the
    bits a single action gives (what the env computes), for both mappings."""
    rng = np.random.default_rng(0)
    for K in (3, 8, 13):
        actions = rng.normal(size=(64, K)) * rng.choice([0.01, 1.0, 100.0], size=(64, 1))
        for mapping in ("simplex", "softmax"):
            batch = action_to_weights(actions, mapping, 1e-6)
            assert batch.shape == (64, K)
            assert all(
                np.array_equal(row, action_to_weights(a, mapping, 1e-6))
                for row, a in zip(batch, actions)
            )
            np.testing.assert_allclose(batch.sum(axis=1), 1.0)
    a = np.array([[-1.0, 1.0, 3.0]])
    np.testing.assert_array_equal(
        action_to_weights(a, "simplex", 0.5), [[0.5 / 5.5, 1.5 / 5.5, 3.5 / 5.5]]
    )


def test_passes_gymnasium_env_checker(env):
    check_env(env, skip_render_check=True)


def test_spaces_follow_the_spec(env):
    K = len(env.domains)
    L = env.num_tracked
    assert env.observation_space.shape == (3 * K + 2 * L + 1,)
    assert env.action_space.shape == (K,)


def test_episode_reward_info_and_truncation(env):
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    K = len(env.domains)
    steps = 0
    while True:
        action = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        np.testing.assert_allclose(info["weights"], action_to_weights(action), rtol=1e-5)
        assert reward == pytest.approx(float(info["weights"] @ info["scores"]), rel=1e-5, abs=1e-6)
        assert info["scores"].shape == (K,) and not info["warmup"] and not info["nonfinite_loss"]
        assert not terminated
        if truncated:
            break
    assert steps == 4 and info["step"] == 4
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(env.action_space.sample())


def test_reset_with_seed_is_reproducible(env):
    runs = []
    for _ in range(2):
        env.reset(seed=7)
        runs.append(env.step(np.full(len(env.domains), 1 / len(env.domains), dtype=np.float32)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_warmup_uses_odm_weights(tiny_prepared):
    env = DataMixingEnv(env_config(warmup=2))
    env.reset(seed=0)
    odm_before = env.odm.weights()
    one_hot = np.eye(len(env.domains), dtype=np.float32)[0]
    _, _, _, _, info = env.step(one_hot)
    assert info["warmup"]
    np.testing.assert_allclose(info["weights"], odm_before, rtol=1e-6)
    env.step(one_hot)
    _, _, _, _, info = env.step(one_hot)
    assert not info["warmup"]
    np.testing.assert_allclose(info["weights"], action_to_weights(one_hot), rtol=1e-6)


def test_nonfinite_loss_ends_the_episode_with_a_flag(tiny_prepared):
    env = DataMixingEnv(env_config())
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        env.trainer.model.get_input_embeddings().weight.fill_(float("nan"))
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated and info["nonfinite_loss"]
    assert np.all(np.isfinite(obs)) and reward == 0.0


def test_gymnasium_and_rllib_registration(tiny_prepared):
    """Both registries hold the env: gymnasium.make(GYM_ID) and the creator RLlib looks up by
    RLLIB_ENV (what `config.environment(env=RLLIB_ENV)` resolves on every env runner)."""
    import gymnasium as gym
    from ray.tune.registry import ENV_CREATOR, _global_registry

    from envs import RLLIB_ENV

    register()
    assert GYM_ID in gym.registry
    env = gym.make(GYM_ID, config=env_config())
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    assert _global_registry.contains(ENV_CREATOR, RLLIB_ENV)
    rllib_env = _global_registry.get(ENV_CREATOR, RLLIB_ENV)(env_config())
    assert isinstance(rllib_env, DataMixingEnv)
    rllib_obs, _ = rllib_env.reset(seed=0)
    np.testing.assert_array_equal(rllib_obs, obs)


def test_loss_reward_is_the_znormalised_loss_decrease_since_each_domain_was_last_sampled(
    tiny_prepared,
):
    from acodm_ray.signals import loss_decrease_scores

    # hand-computed: domains 0 and 2 have both losses (decreases 1.0 and 0.0; z = +-0.7071 with the
    # unbiased std), domain 1 is new, domain 3 not sampled now -> 0
    prev = np.array([3.0, np.nan, 2.0, 4.0])
    now = np.array([2.0, 5.0, 2.0, np.nan])
    np.testing.assert_allclose(
        loss_decrease_scores(prev, now), [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2), 0.0], atol=1e-6
    )
    assert not loss_decrease_scores(np.full(3, np.nan), np.ones(3)).any()

    env = DataMixingEnv(env_config(env={"reward": "loss"}))
    env.reset(seed=0)
    uniform = np.full(len(env.domains), 1.0 / len(env.domains), dtype=np.float32)
    seen = np.full(len(env.domains), np.nan)
    for _ in range(3):
        _, reward, _, _, info = env.step(uniform)
        losses = np.where(info["counts"] > 0, info["losses"], np.nan)
        expected = loss_decrease_scores(seen, losses)
        np.testing.assert_allclose(info["scores"], expected, atol=1e-5)
        assert reward == pytest.approx(float(info["weights"] @ expected), abs=1e-5)
        seen = np.where(np.isfinite(losses), losses, seen)
    with pytest.raises(Exception, match="env.reward"):
        DataMixingEnv(env_config(env={"reward": "accuracy"}))
