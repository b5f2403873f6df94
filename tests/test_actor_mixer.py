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


def test_a_policy_that_reads_progress_on_another_scale_is_refused(tmp_path):
    """A trajectory replays rows by state[-1] / progress_scale: another scale would silently replay
    the wrong rows, so it is refused (and for every kind, since an actor reads progress too)."""
    from acodm_ray.agent.policy_file import save_trajectory_policy

    rows = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    traj = save_trajectory_policy(
        tmp_path / "traj", rows, DOMAINS, {"dim": 12, "progress_scale": 100.0}, {}
    )
    mixer = ActorMixer(traj, DOMAINS, state_dim=12, progress_scale=100.0)
    state = np.zeros(12, np.float32)
    state[-1] = 60.0  # 60% of the run: the second half of a 2-step schedule
    np.testing.assert_allclose(mixer.weights(state), rows[1], atol=1e-6)
    with pytest.raises(PolicyMismatchError, match=r"\(t / T\) x 100, this run's state has x 1 "):
        ActorMixer(traj, DOMAINS, state_dim=12, progress_scale=1.0)
    torch.manual_seed(0)
    actor_dir = save_policy(
        tmp_path / "actor", Actor(12, 3, 8, 1), DOMAINS, {"dim": 12, "progress_scale": 100.0}, {}
    )
    with pytest.raises(PolicyMismatchError, match="signals.progress_scale"):
        ActorMixer(actor_dir, DOMAINS, state_dim=12, progress_scale=10.0)
    ActorMixer(actor_dir, DOMAINS, state_dim=12, progress_scale=100.0)  # the same scale is fine
