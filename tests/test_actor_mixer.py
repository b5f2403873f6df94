"""An exported actor as a mixer: weights from state, refusal of other domains or state layouts."""

import numpy as np
import pytest
import torch

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import PolicyFileError, save_policy
from acodm_ray.mixers.actor import ActorMixer, PolicyMismatchError

DOMAINS = ["code", "law", "web"]


@pytest.fixture
def policy_dir(tmp_path):
    torch.manual_seed(0)
    actor = Actor(state_dim=12, num_domains=3, hidden=16, layers=2)
    return save_policy(tmp_path / "policy", actor, DOMAINS, {"dim": 12}, {"note": "test"})


def test_weights_follow_the_state(policy_dir):
    mixer = ActorMixer(policy_dir, DOMAINS, state_dim=12)
    a, b = mixer.weights(np.zeros(12, np.float32)), mixer.weights(np.full(12, 2.0, np.float32))
    assert a.sum() == pytest.approx(1) and b.sum() == pytest.approx(1)
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "domains, state_dim, match",
    [
        (["code", "law"], 12, "trained on domains.*missing from corpus: \\['web'\\]"),
        (["code", "law", "web", "math"], 12, "not in policy: \\['math'\\]"),
        (["web", "law", "code"], 12, "another order"),
        (DOMAINS, 14, "state of dimension 12, this run's state has 14"),
    ],
)
def test_mismatched_runs_are_refused(policy_dir, domains, state_dim, match):
    with pytest.raises(PolicyMismatchError, match=match):
        ActorMixer(policy_dir, domains, state_dim)


def test_missing_policy_and_pickles_are_refused(tmp_path):
    with pytest.raises(PolicyFileError, match="not found|does not exist|no policy"):
        ActorMixer(tmp_path / "nothing", DOMAINS)
    pt = tmp_path / "policy.pt"
    torch.save({"x": 1}, pt)
    with pytest.raises(PolicyFileError):
        ActorMixer(pt, DOMAINS)
