"""Mixers: static recipes, weights files, and ODM against hand-computed values."""

import math

import numpy as np
import pytest

from acodm_ray.config import MixerConfig
from acodm_ray.mixers import build_mixer
from acodm_ray.mixers.odm import ODMMixer, exploration_rate
from acodm_ray.sampler import WeightsError

NAN = float("nan")


def test_exploration_rate():
    assert exploration_rate(2, 1) == 0.5  # sqrt(ln2/2) = 0.589 > 1/2
    assert exploration_rate(2, 2) == pytest.approx(math.sqrt(math.log(2) / 4))
    assert exploration_rate(22, 1000) == pytest.approx(math.sqrt(math.log(22) / 22000))


def test_smoothed_mean_matches_hand_computation():
    odm = ODMMixer(["a", "b"], np.array([0.75, 0.25]), "smoothed_mean", alpha=0.5)
    np.testing.assert_allclose(odm.weights(), [0.75, 0.25])  # starts at natural proportions
    # t=1: eps_1 = min(1/2, 0.589) = 0.5, so (1 - K eps) = 0: uniform
    #      R = [0.5 e^1, 0.5 e^2] = [1.359141, 3.694528]
    np.testing.assert_allclose(odm.update_from_losses(np.array([1.0, 2.0])), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(odm.estimated_reward, [1.3591409, 3.6945280], atol=1e-6)
    # t=2: only "a" sampled (loss 1.5): R_a = 0.5*1.359141 + 0.5*e^1.5 = 2.920415; R_b unchanged
    #      eps_2 = sqrt(ln 2 / 4) = 0.416277; 1 - 2 eps_2 = 0.167445
    #      p_a = 0.167445 * 2.920415 / 6.614943 + 0.416277 = 0.490202; p_b = 0.509798
    w = odm.update_from_losses(np.array([1.5, NAN]))
    np.testing.assert_allclose(odm.estimated_reward, [2.9204156, 3.6945280], atol=1e-6)
    np.testing.assert_allclose(w, [0.490202, 0.509798], atol=1e-6)


def test_exp3_matches_hand_computation():
    odm = ODMMixer(["a", "b"], np.array([0.75, 0.25]), "exp3")
    # t=1: R += (L/10)/p = [0.2/0.75, 0.3/0.25] = [0.266667, 1.2]; eps_1 = 0.5 -> uniform
    np.testing.assert_allclose(odm.update_from_losses(np.array([2.0, 3.0])), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(odm.estimated_reward, [0.2666667, 1.2], atol=1e-6)
    # t=2: only "b" (loss 1.0): R_b += 0.1 / 0.5 = 1.4; prev eps = 0.5, eps_2 = 0.416277
    #      softmax(0.5 * [0.266667, 1.4]) = [0.362005, 0.637995]
    #      p = 0.167445 * softmax + 0.416277 = [0.476893, 0.523107]
    w = odm.update_from_losses(np.array([NAN, 1.0]))
    np.testing.assert_allclose(odm.estimated_reward, [0.2666667, 1.4], atol=1e-6)
    np.testing.assert_allclose(w, [0.476893, 0.523107], atol=1e-5)


def test_odm_favours_high_loss_domains_and_round_trips_state():
    odm = ODMMixer(list("abc"), np.full(3, 1 / 3), "smoothed_mean")
    for _ in range(200):
        odm.update_from_losses(np.array([4.0, 2.0, 1.0]))
    w = odm.weights()
    assert w[0] > w[1] > w[2] and w.sum() == pytest.approx(1.0)
    other = ODMMixer(list("abc"), np.full(3, 1 / 3), "smoothed_mean")
    other.load_state_dict(odm.state_dict())
    np.testing.assert_array_equal(
        other.update_from_losses(np.array([1.0, NAN, 3.0])),
        odm.update_from_losses(np.array([1.0, NAN, 3.0])),
    )


def test_static_mixers(tmp_path):
    natural = np.array([0.7, 0.2, 0.1])
    domains = ["a", "b", "c"]
    np.testing.assert_allclose(
        build_mixer(MixerConfig(name="uniform"), domains, natural).weights(), 1 / 3
    )
    np.testing.assert_allclose(
        build_mixer(MixerConfig(name="natural"), domains, natural).weights(), natural
    )
    f = tmp_path / "w.yaml"
    f.write_text("c: 0.5\na: 0.25\nb: 0.25\n")
    np.testing.assert_allclose(
        build_mixer(MixerConfig(name="file", weights_file=str(f)), domains, natural).weights(),
        [0.25, 0.25, 0.5],
    )


@pytest.mark.parametrize(
    "content, error, match",
    [
        ('{"a": 0.5, "b": 0.5, "zz": 0}', WeightsError, "unknown domain.*zz"),
        ('{"a": 0.5, "b": 0.5}', WeightsError, "no weight given for domain.*'c'"),
        ('{"a": 0.5, "b": 0.5, "c": 0.5}', WeightsError, "sum to 1.5"),
        ('{"a": NaN, "b": 0.5, "c": 0.5}', WeightsError, "not finite.*'a'"),
        ('{"a": -0.5, "b": 0.5, "c": 1.0}', WeightsError, "negative.*'a'"),
        ('{"a": "x", "b": 0.5, "c": 0.5}', ValueError, "non-numeric"),
        ("[0.5, 0.5]", ValueError, "mapping"),
    ],
)
def test_bad_weights_files(tmp_path, content, error, match):
    f = tmp_path / "w.json"
    f.write_text(content)
    with pytest.raises(error, match=match):
        build_mixer(
            MixerConfig(name="file", weights_file=str(f)), ["a", "b", "c"], np.full(3, 1 / 3)
        )


def test_missing_weights_file_and_unknown_mixer(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_mixer(
            MixerConfig(name="file", weights_file=str(tmp_path / "no.yaml")), ["a"], np.ones(1)
        )
    with pytest.raises(ValueError, match="unknown mixer 'bandit'.*valid mixers"):
        build_mixer(MixerConfig(name="bandit"), ["a"], np.ones(1))


def test_alignment_mixer_matches_hand_computation():
    from acodm_ray.mixers import AlignmentMixer
    from acodm_ray.train_step import StepSignals

    mixer = AlignmentMixer(["a", "b", "c"], mu=1e-3, clip_min=-5.0, clip_max=5.0, floor=0.1)
    np.testing.assert_allclose(mixer.weights(), [1 / 3] * 3)  # starts uniform (DoGE)
    # eta = lr / mu = 1; scores [2, -1, 7] clip to [2, -1, 5]; softmax of log(1/3) + s, then the floor
    w = mixer.update_from_scores(np.array([2.0, -1.0, 7.0]), lr=1e-3)
    e = [math.exp(2.0), math.exp(-1.0), math.exp(5.0)]
    expected = [0.9 * x / sum(e) + 0.1 / 3 for x in e]
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w == pytest.approx([0.075916, 0.035453, 0.888631], abs=1e-6)
    # a second step at half the learning rate: eta = 0.5; an unsampled domain (score 0) keeps its log weight
    w2 = mixer.update_from_scores(np.array([0.0, 4.0, -2.0]), lr=5e-4)
    logits = np.array([2.0, -1.0 + 2.0, 5.0 - 1.0])
    z = np.exp(logits - logits.max())
    np.testing.assert_allclose(w2, 0.9 * z / z.sum() + 0.1 / 3, rtol=1e-12)
    # the step's signals drive it (raw scores, not the z-normalised reward), a NaN step is skipped
    state = mixer.state_dict()
    again = AlignmentMixer(["a", "b", "c"], floor=0.1)
    again.load_state_dict(state)
    np.testing.assert_allclose(again.weights(), w2)
    sig = StepSignals(
        step=3,
        loss=1.0,
        losses=np.ones(3),
        counts=np.ones(3),
        scores=np.array([9.0, -9.0, 0.0]),
        raw_scores=np.array([0.0, 0.0, 1.0]),
        state=np.zeros(10, np.float32),
        weights=w2,
        lr=1e-3,
        grad_norm=1.0,
        tokens=1,
        seconds=0.1,
    )
    again.update(sig)
    logits[2] += 1.0
    z = np.exp(logits - logits.max())
    np.testing.assert_allclose(again.weights(), 0.9 * z / z.sum() + 0.1 / 3, rtol=1e-12)
    before = again.weights()
    again.update(
        StepSignals(**{**sig.__dict__, "finite": False, "raw_scores": np.array([5.0, 5.0, -5.0])})
    )
    np.testing.assert_allclose(again.weights(), before)
    # built from the config like every mixer; bad knobs and non-finite scores are refused
    built = build_mixer(
        MixerConfig(name="alignment", alignment_floor=0.2), ["a", "b"], np.array([0.5, 0.5])
    )
    assert isinstance(built, AlignmentMixer) and built.floor == 0.2
    with pytest.raises(ValueError, match="floor"):
        AlignmentMixer(["a", "b"], floor=1.5)
    with pytest.raises(ValueError, match="not finite"):
        built.update_from_scores(np.array([np.nan, 1.0]), lr=1e-3)
