"""State features and gradient-alignment scores against docs/method.md and brute-force computations."""

import copy

import numpy as np
import torch

from acodm_ray.signals import StateTracker, alignment_scores, state_dim, znorm_clip
from acodm_ray.train_step import LMTrainer


def brute_force_scores(grads: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """docs/method.md written out with loops: s_i = sum_{j!=i} <g_i, g_j> / mean ||g||, z-norm, clip."""
    idx = [i for i, g in enumerate(grads) if g is not None]
    raw = np.zeros(len(grads))
    for i in idx:
        raw[i] = sum(float(np.dot(grads[i], grads[j])) for j in idx if j != i)
    mean_norm = np.mean([np.linalg.norm(grads[i]) for i in idx])
    raw[idx] = raw[idx] / (mean_norm + 1e-6)
    z = np.zeros(len(grads))
    vals = raw[idx]
    if len(idx) > 1:
        z[idx] = np.clip((vals - vals.mean()) / (vals.std(ddof=1) + 1e-8), -3, 3)
    return raw, z


def test_alignment_scores_equal_brute_force():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=50) for _ in range(4)]
    grads[1] = grads[0] * 2 + rng.normal(size=50) * 0.1  # two aligned domains
    raw, z = alignment_scores(torch.tensor(np.stack(grads)), torch.ones(4, dtype=torch.bool))
    exp_raw, exp_z = brute_force_scores(grads)
    np.testing.assert_allclose(raw, exp_raw, rtol=1e-10)
    np.testing.assert_allclose(z, exp_z, rtol=1e-10)
    assert z[0] > z[2] and z[1] > z[3]  # aligned domains score high


def test_unsampled_domains_score_zero_and_do_not_shift_the_others():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 20))
    sampled = torch.tensor([True, False, True, True])
    raw, z = alignment_scores(torch.tensor(g), sampled)
    assert raw[1] == 0 and z[1] == 0
    exp_raw, exp_z = brute_force_scores([g[0], None, g[2], g[3]])
    np.testing.assert_allclose(raw, exp_raw, rtol=1e-10)
    np.testing.assert_allclose(z, exp_z, rtol=1e-10)


def test_single_sampled_domain_has_no_partner():
    raw, z = alignment_scores(torch.ones(3, 5), torch.tensor([False, True, False]))
    assert np.all(raw == 0) and np.all(z == 0)


def test_znorm_clip_clips_and_handles_single_entries():
    x = torch.tensor([0.0, 0.0, 0.0, 0.0, 100.0] + [0.0] * 20)
    z = znorm_clip(x, 3.0)
    assert float(z.max()) == 3.0
    assert torch.all(znorm_clip(torch.tensor([5.0])) == 0)


def test_state_layout_follows_spec():
    K, L = 3, 2
    tracker = StateTracker(K, L, progress_scale=100.0)
    s1 = tracker.build(np.array([2.0, np.nan, 4.0]), np.array([8, 0, 16]), np.array([1.0, 2.0]),
                       np.array([0.1, 0.3]), progress=0.25)
    assert s1.shape == (state_dim(K, L),) == (3 * K + 2 * L + 1,)
    loss_g, dloss_g, count_g = s1[:K], s1[K:2 * K], s1[2 * K:3 * K]
    # unseen domain takes the step's mean loss (3.0), so the group is [-1, 0, 1] after z-norm
    np.testing.assert_allclose(loss_g, [-1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(dloss_g, 0, atol=1e-9)  # no change at the first step
    np.testing.assert_allclose(count_g, znorm_clip(torch.tensor([8.0, 0.0, 16.0])).numpy(), atol=1e-6)
    np.testing.assert_allclose(s1[3 * K:3 * K + L], [-0.7071068, 0.7071068], atol=1e-6)
    assert s1[-1] == np.float32(25.0)
    # second step: domain 1 still unsampled -> carried forward, change 0; domain 0 rose by 1
    s2 = tracker.build(np.array([3.0, np.nan, 4.0]), np.array([8, 0, 16]), np.array([1.0, 2.0]),
                       np.array([0.1, 0.3]), progress=0.5)
    raw_delta = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(s2[K:2 * K], znorm_clip(torch.tensor(raw_delta)).numpy(), atol=1e-6)


def test_trainer_scores_equal_per_domain_autograd(cfg, corpus):
    """The grad-difference trick gives the same scores as separate backward passes per domain."""
    trainer = LMTrainer(cfg, corpus, device="cpu")
    trainer.step(np.full(3, 1 / 3))  # move off the initialisation
    replay = copy.deepcopy(trainer)
    weights = np.array([0.5, 0.3, 0.2])
    signals = trainer.step(weights)

    # replay the same micro-batches in the copy, one autograd.grad per micro-batch
    plan = replay.sampler.plan(weights, cfg.train.grad_accum)
    per_domain: dict[int, list[np.ndarray]] = {}
    for d in plan:
        batch = replay.sampler.batch(int(d))
        loss = replay._loss(batch)
        grads = torch.autograd.grad(loss, replay.align_params)
        per_domain.setdefault(int(d), []).append(torch.cat([g.flatten() for g in grads]).numpy())
    means = [np.mean(per_domain[i], axis=0) if i in per_domain else None for i in range(3)]
    exp_raw, exp_z = brute_force_scores(means)
    np.testing.assert_allclose(signals.raw_scores, exp_raw, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(signals.scores, exp_z, rtol=1e-3, atol=1e-4)
    counts = np.array([len(per_domain.get(i, [])) for i in range(3)]) * cfg.train.micro_batch_size
    np.testing.assert_array_equal(signals.counts, counts)
