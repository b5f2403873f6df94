import numpy as np
import pytest
import torch

from acodm_ray.sampler import (
    MixtureSampler,
    WeightsError,
    check_weights,
    effective_mix,
    largest_remainder,
    weights_from_mapping,
)


def make_sampler(seed=0, length=500, seq_len=16):
    streams = {d: np.arange(length, dtype=np.int32) + 1000 * i for i, d in enumerate("abc")}
    return MixtureSampler(streams, list("abc"), seq_len=seq_len, micro_batch_size=4, seed=seed)


def test_plan_honours_weights_statistically():
    sampler = make_sampler()
    w = np.array([0.6, 0.3, 0.1])
    n = 30_000
    freq = np.bincount(sampler.plan(w, n), minlength=3) / n
    # 4 binomial standard deviations: fails only if the sampler ignores the weights.
    tol = 4 * np.sqrt(w * (1 - w) / n)
    assert np.all(np.abs(freq - w) < tol), (freq, w)


def test_zero_weight_domain_is_never_drawn():
    sampler = make_sampler()
    assert 1 not in set(sampler.plan(np.array([0.5, 0.0, 0.5]), 2000).tolist())


def test_batch_windows_come_from_the_chosen_domain():
    sampler = make_sampler()
    batch = sampler.batch(2)
    assert batch.shape == (4, 17)
    assert (batch >= 2000).all() and (batch < 2500).all()
    # consecutive tokens: windows are contiguous slices of the stream
    assert (batch[:, 1:] - batch[:, :-1] == 1).all()


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.5, 0.5], "shape"),
        ([0.7, 0.7, -0.4], "negative"),
        ([0.2, 0.2, 0.2], "sum to"),
        ([np.nan, 0.5, 0.5], "not finite"),
    ],
)
def test_bad_weights_are_refused(weights, match):
    with pytest.raises(WeightsError, match=match):
        check_weights(weights, list("abc"))


def test_weights_mapping_unknown_and_missing_domains():
    with pytest.raises(WeightsError, match="unknown domain.*'zz'"):
        weights_from_mapping({"a": 0.5, "b": 0.5, "zz": 0.0}, list("ab"))
    with pytest.raises(WeightsError, match="no weight given for domain.*'b'"):
        weights_from_mapping({"a": 1.0}, list("ab"))


def test_domain_shorter_than_a_sequence_is_refused():
    streams = {"a": np.arange(100, dtype=np.int32), "b": np.arange(10, dtype=np.int32)}
    with pytest.raises(
        ValueError, match="domain 'b' has 10 tokens, fewer than one training sequence"
    ):
        MixtureSampler(streams, ["a", "b"], seq_len=16, micro_batch_size=2, seed=0)


def test_duplicate_and_missing_domains_are_refused():
    streams = {"a": np.arange(100, dtype=np.int32)}
    with pytest.raises(ValueError, match="duplicate"):
        MixtureSampler(streams, ["a", "a"], seq_len=4, micro_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="no token stream for domain.*'b'"):
        MixtureSampler(streams, ["a", "b"], seq_len=4, micro_batch_size=2, seed=0)


def test_state_dict_round_trip_reproduces_draws():
    sampler = make_sampler(seed=3)
    w = np.array([0.2, 0.3, 0.5])
    sampler.plan(w, 5), sampler.batch(0)
    state = sampler.state_dict()
    expected = (sampler.plan(w, 7), sampler.batch(1))
    other = make_sampler(seed=99)
    other.load_state_dict(state)
    got = (other.plan(w, 7), other.batch(1))
    assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


def test_ranks_share_the_plan_but_not_the_windows():
    streams = {d: np.arange(5000, dtype=np.int32) for d in "ab"}
    r0 = MixtureSampler(streams, ["a", "b"], 16, 4, seed=1, rank=0)
    r1 = MixtureSampler(streams, ["a", "b"], 16, 4, seed=1, rank=1)
    w = np.array([0.5, 0.5])
    assert np.array_equal(r0.plan(w, 50), r1.plan(w, 50))
    assert not np.array_equal(r0.batch(0), r1.batch(0))


def test_largest_remainder_hand_computed():
    # quotas 2.5, 1.2, 0.3 of 4: floors 2, 1, 0, the one left goes to the largest remainder (0.5)
    np.testing.assert_array_equal(largest_remainder(np.array([0.625, 0.3, 0.075]), 4), [3, 1, 0])
    np.testing.assert_array_equal(
        largest_remainder(np.array([0.5, 0.5]), 3), [2, 1]
    )  # tie: lower index
    np.testing.assert_array_equal(largest_remainder(np.array([0.2, 0.8]), 0), [0, 0])


def test_iid_allocation_is_the_plan():
    a, b = make_sampler(seed=3), make_sampler(seed=3)
    w = np.array([0.6, 0.3, 0.1])
    plan, lam = a.allocate(w, 8, "iid")
    np.testing.assert_array_equal(plan, b.plan(w, 8))
    np.testing.assert_allclose(lam, np.full(8, 1 / 8))


def test_forced_allocation_gives_every_domain_one_then_draws():
    sampler = make_sampler()
    plan, lam = sampler.allocate(np.array([1.0, 0.0, 0.0]), 5, "forced")
    np.testing.assert_array_equal(plan, [0, 1, 2, 0, 0])  # one each, then the weights' draws
    np.testing.assert_allclose(
        effective_mix(plan, lam, 3), [0.6, 0.2, 0.2]
    )  # flatter than the weights


def test_weighted_allocation_hand_computed():
    sampler = make_sampler()
    w = np.array([0.5, 0.3, 0.2])
    plan, lam = sampler.allocate(w, 7, "weighted")
    # 1 each + largest_remainder(w, 4) = 1 + [2, 1, 1] (quotas 2, 1.2, 0.8: floors 2, 1, 0; leftover to 0.8)
    np.testing.assert_array_equal(plan, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(lam, [0.5 / 3] * 3 + [0.15] * 2 + [0.1] * 2)
    np.testing.assert_allclose(effective_mix(plan, lam, 3), w)  # the mix trained on IS the weights


def test_coverage_needs_a_micro_batch_per_domain():
    with pytest.raises(ValueError, match="grad_accum = 2 is smaller than the 3 domains"):
        make_sampler().allocate(np.full(3, 1 / 3), 2, "weighted")
    with pytest.raises(ValueError, match="unknown coverage 'all'"):
        make_sampler().allocate(np.full(3, 1 / 3), 3, "all")


def test_effective_mix_counts_a_domain_without_micro_batches_and_coverage_at_m_equal_k():
    """A domain the plan never drew (the last one here) still has its 0 in the mix; with exactly one
    micro-batch per domain (M = K) weighted coverage works and trains each domain once."""
    np.testing.assert_allclose(
        effective_mix(np.array([0, 0, 1]), np.full(3, 1 / 3), 3), [2 / 3, 1 / 3, 0.0]
    )
    plan, lam = make_sampler().allocate(np.array([0.5, 0.3, 0.2]), 3, "weighted")
    np.testing.assert_array_equal(plan, [0, 1, 2])
    np.testing.assert_allclose(lam, [0.5, 0.3, 0.2])


def test_reference_batch_rows_come_from_the_named_domains_and_leave_the_step_draws_alone():
    """signals.score "eval": each row of the reference micro-batch is a window of one of the given
    domains (streams a, b, c hold 0.., 1000.., 2000..), all of them while there are enough rows, and
    drawing it changes neither the plan nor the step's windows; its generator is checkpointed."""
    sampler, twin = make_sampler(seed=5), make_sampler(seed=5)
    ref, domains = sampler.reference_batch([0, 2])
    assert ref.shape == (4, 17)
    owners = (ref[:, 0] // 1000).tolist()
    assert owners == domains.tolist() and set(owners) == {
        0,
        2,
    }  # 4 rows, 2 domains: drawn with replacement, both seen at seed 5
    assert all(bool((row - row[0] == torch.arange(17)).all()) for row in ref)  # contiguous windows
    assert set((sampler.reference_batch([1])[0][:, 0] // 1000).tolist()) == {1}
    streams = {d: np.arange(500, dtype=np.int32) + 1000 * i for i, d in enumerate("abc")}
    pairs = MixtureSampler(streams, list("abc"), seq_len=16, micro_batch_size=2, seed=0)
    for _ in range(20):  # 2 rows, 2 domains: without replacement, one row of each every time
        assert sorted((pairs.reference_batch([0, 2])[0][:, 0] // 1000).tolist()) == [0, 2]
    w = np.array([0.2, 0.3, 0.5])
    assert np.array_equal(sampler.plan(w, 9), twin.plan(w, 9)) and torch.equal(
        sampler.batch(1), twin.batch(1)
    )
    state = sampler.state_dict()
    expected, _ = sampler.reference_batch([0, 1, 2])
    other = make_sampler(seed=99)
    other.load_state_dict(state)
    assert torch.equal(other.reference_batch([0, 1, 2])[0], expected)
