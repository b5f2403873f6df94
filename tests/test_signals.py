"""State features and gradient-alignment scores against docs/method.md and brute-force computations."""

import copy

import numpy as np
import pytest
import torch

from acodm_ray.signals import (
    RunningScale,
    StateTracker,
    adam_preconditioner,
    alignment_scores,
    cross_alignment,
    eval_alignment,
    perplexity_weights,
    state_dim,
    step_scores,
    total_alignment,
    znorm_clip,
)
from acodm_ray.target_progress import TargetProgress, fair_weights
from acodm_ray.train_step import LMTrainer
from tests.conftest import tiny_config


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
    s1 = tracker.build(
        np.array([2.0, np.nan, 4.0]),
        np.array([8, 0, 16]),
        np.array([1.0, 2.0]),
        np.array([0.1, 0.3]),
        progress=0.25,
    )
    assert s1.shape == (state_dim(K, L),) == (3 * K + 2 * L + 1,)
    loss_g, dloss_g, count_g = s1[:K], s1[K : 2 * K], s1[2 * K : 3 * K]
    # unseen domain takes the step's mean loss (3.0), so the group is [-1, 0, 1] after z-norm
    np.testing.assert_allclose(loss_g, [-1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(dloss_g, 0, atol=1e-9)  # no change at the first step
    np.testing.assert_allclose(
        count_g, znorm_clip(torch.tensor([8.0, 0.0, 16.0])).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(s1[3 * K : 3 * K + L], [-0.7071068, 0.7071068], atol=1e-6)
    assert s1[-1] == np.float32(25.0)
    # second step: domain 1 still unsampled -> carried forward, change 0; domain 0 rose by 1
    s2 = tracker.build(
        np.array([3.0, np.nan, 4.0]),
        np.array([8, 0, 16]),
        np.array([1.0, 2.0]),
        np.array([0.1, 0.3]),
        progress=0.5,
    )
    raw_delta = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(
        s2[K : 2 * K], znorm_clip(torch.tensor(raw_delta)).numpy(), atol=1e-6
    )


def test_total_alignment_keeps_the_self_term_and_masks_unsampled():
    """s_i = <g_i, sum_j g_j> over sampled domains, by loops; NaN (not 0) where not sampled."""
    g = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    s = total_alignment(torch.tensor(g), torch.tensor([True, False, True]))
    # the present domains' gradient sum: g[0] + g[2] = (1.5, 2.5)
    assert s[0] == pytest.approx(1 * 1.5 + 2 * 2.5) and s[2] == pytest.approx(0.5 * 1.5 + 0.5 * 2.5)
    assert np.isnan(s[1])
    # not zero-sum: two domains pulling the same way both score positive
    assert s[0] > 0 and s[2] > 0


def test_cross_alignment_drops_the_self_term_and_masks_unsampled():
    """s_i = <g_i, sum_{j != i} g_j> over sampled domains, by hand; NaN where not sampled; a domain
    sampled alone has no partner and scores 0."""
    g = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    s = cross_alignment(torch.tensor(g), torch.tensor([True, False, True]))
    assert s[0] == pytest.approx(1 * 0.5 + 2 * 0.5) and s[2] == pytest.approx(0.5 * 1 + 0.5 * 2)
    assert np.isnan(s[1])
    every = cross_alignment(torch.tensor(g), torch.ones(3, dtype=torch.bool))
    assert every[1] == pytest.approx(3 * 1.5 - 1 * 2.5)  # <g_1, g_0 + g_2>
    alone = cross_alignment(torch.tensor(g), torch.tensor([False, True, False]))
    assert alone[1] == 0.0 and np.isnan(alone[[0, 2]]).all()


def test_eval_alignment_is_each_domain_against_the_reference_and_masks_unsampled():
    """s_i = <g_i, g_ref> by hand; NaN where not sampled; a domain sampled alone still has a partner
    (the reference); step_scores("eval") is it divided by the running scale, and refuses no reference."""
    g = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    ref = torch.tensor([2.0, -1.0])
    s = eval_alignment(torch.tensor(g), torch.tensor([True, False, True]), ref)
    assert (
        s[0] == pytest.approx(1 * 2 - 2 * 1)
        and s[2] == pytest.approx(0.5 * 2 - 0.5 * 1)
        and np.isnan(s[1])
    )
    alone = eval_alignment(torch.tensor(g), torch.tensor([False, True, False]), ref)
    assert alone[1] == pytest.approx(3 * 2 + 1 * 1) and np.isnan(alone[[0, 2]]).all()
    every = torch.ones(3, dtype=torch.bool)
    _, scaled = step_scores(torch.tensor(g), every, "eval", 999.0, 3.0, RunningScale(beta=0.0), ref)
    raw = np.array([0.0, 7.0, 0.5])  # beta 0: the scale is this step's mean |s| = 7.5 / 3
    np.testing.assert_allclose(scaled, raw / 2.5)
    with pytest.raises(ValueError, match="reference gradient"):
        step_scores(torch.tensor(g), every, "eval", 999.0, 3.0, RunningScale(), None)


def test_fair_weights_hand_computed():
    """c_e = 1 / max(D_e, 0.1 max D) over the evaluation domains, divided by their mean, 0 elsewhere;
    no estimate yet: the mean of the others' c; nothing positive: all 1."""
    d = np.array([1.0, 4.0, 2.0, 9.0])
    np.testing.assert_allclose(
        fair_weights(d, [0, 1, 2]), [4 / 7 * 3, 1 / 7 * 3, 2 / 7 * 3, 0.0]
    )  # 1/D = 1, 1/4, 1/2; mean 7/12
    floored = fair_weights(np.array([-1.0, 0.5, 10.0]), [0, 1, 2])  # floor 1: 1, 1, 0.1
    np.testing.assert_allclose(floored, np.array([1.0, 1.0, 0.1]) / 0.7)
    unseen = fair_weights(np.array([2.0, np.nan, 1.0]), [0, 1, 2])  # 0.5, (0.75), 1
    np.testing.assert_allclose(unseen, np.array([0.5, 0.75, 1.0]) / 0.75)
    np.testing.assert_allclose(fair_weights(np.array([np.nan, -1.0, 0.0]), [0, 1, 2]), 1.0)
    np.testing.assert_allclose(fair_weights(np.full(2, np.nan), [1]), [0.0, 1.0])


def test_target_progress_is_a_bias_corrected_running_mean_per_domain():
    """beta 0.5: a domain's first measurement is its mean (m = 0.5 x, corrected by 1 - 0.5); the second
    folds in: m = 0.5 (0.5 x1) + 0.5 x2, corrected by 1 - 0.25; a domain without rows keeps its mean;
    a domain never measured is NaN; the state round-trips."""
    progress = TargetProgress(3, beta=0.5)
    progress.update(np.array([4.0, 3.0, 0.0]), np.array([2, 1, 0]))  # means 2, 3, -
    np.testing.assert_allclose(progress.decrease[:2], [2.0, 3.0])
    assert np.isnan(progress.decrease[2])
    progress.update(np.array([6.0, 0.0, 0.0]), np.array([1, 0, 0]))
    np.testing.assert_allclose(progress.decrease[:2], [(0.25 * 2 + 0.5 * 6) / 0.75, 3.0])
    again = TargetProgress(3, beta=0.5)
    again.load_state_dict(progress.state_dict())
    np.testing.assert_allclose(again.decrease[:2], progress.decrease[:2])
    with pytest.raises(ValueError, match="3 domains"):
        TargetProgress(2).load_state_dict(progress.state_dict())


def test_trainer_fair_progress_is_the_step_gradient_on_each_reference_row(corpus):
    """signals.eval_weighting fair: what a step adds to TargetProgress is, per reference row, <G, h_r>
    with G the step's accumulated gradient on the alignment matrices (sum over micro-batches of
    loss weight x gradient) and h_r the row's own gradient, replayed by hand."""
    cfg = tiny_config(
        train={"coverage": "weighted", "eval_domains": list(corpus.domains[:2])},
        signals={"score": "eval", "eval_weighting": "fair"},
    )
    trainer = LMTrainer(cfg, corpus, device="cpu")
    trainer.step(np.full(3, 1 / 3))
    replay = copy.deepcopy(trainer)
    weights = np.array([0.5, 0.3, 0.2])
    trainer.step(weights)
    plan, lam = replay.sampler.allocate(weights, cfg.train.grad_accum, "weighted")
    flat = lambda grads: torch.cat([g.flatten() for g in grads]).double()  # noqa: E731
    step_grad = sum(
        float(w)
        * flat(torch.autograd.grad(replay._loss(replay.sampler.batch(int(d))), replay.align_params))
        for d, w in zip(plan, lam)
    )
    ref_batch, rows = replay.sampler.reference_batch([0, 1])
    decrease = [
        float(
            flat(torch.autograd.grad(replay._loss(ref_batch[r : r + 1]), replay.align_params))
            @ step_grad
        )
        for r in range(len(rows))
    ]
    sums = np.bincount(rows, weights=decrease, minlength=3)
    replay.reference.progress.update(sums, np.bincount(rows, minlength=3))
    np.testing.assert_allclose(
        trainer.reference.progress.decrease[:2], replay.reference.progress.decrease[:2], rtol=1e-4
    )
    assert np.isnan(trainer.reference.progress.decrease[2])  # not evaluated: never measured


def test_adam_preconditioner_hand_computed():
    """P = 1 / (sqrt(v / (1 - beta2^t)) + eps), flattened over the matrices in order."""
    v = [torch.tensor([[0.04, 0.0]]), torch.tensor([0.01])]
    p = adam_preconditioner(v, step=1, beta2=0.5, eps=0.1)  # v_hat = 2 v: 0.08, 0, 0.02
    expected = 1 / (np.sqrt([0.08, 0.0, 0.02]) + 0.1)
    np.testing.assert_allclose(p.numpy(), expected)
    np.testing.assert_allclose(
        adam_preconditioner(v, step=2, beta2=0.5, eps=0.0).numpy()[[0, 2]],
        1 / np.sqrt(np.array([0.04, 0.01]) / 0.75),
    )


def test_trainer_adam_geometry_is_plain_before_the_first_update(corpus):
    """signals.geometry adam: no second moments before the first update, so the first step's eval
    scores are the plain geometry's, and the later ones differ from them."""
    runs = {}
    for geometry in ("plain", "adam"):
        cfg = tiny_config(
            train={"coverage": "weighted", "eval_domains": list(corpus.domains[:2])},
            signals={"score": "eval", "geometry": geometry},
        )
        trainer = LMTrainer(cfg, corpus, device="cpu")
        runs[geometry] = [trainer.step(np.full(3, 1 / 3)).scores for _ in range(2)]
    np.testing.assert_allclose(runs["adam"][0], runs["plain"][0])
    assert not np.allclose(runs["adam"][1], runs["plain"][1])


def test_perplexity_weights_hand_computed():
    """c_e = ppl_e / mean ppl over the evaluation domains (0 elsewhere); a domain not seen yet takes the
    mean of the seen ones' perplexity; nothing seen: all 1."""
    losses = np.log([10.0, 30.0, np.nan, 20.0])
    np.testing.assert_allclose(
        perplexity_weights(losses, [0, 1, 2]), [0.5, 1.5, 1.0, 0.0]
    )  # ppl 10, 30, (20) / 20
    np.testing.assert_allclose(
        perplexity_weights(losses, [1, 3]), [0.0, 1.2, 0.0, 0.8]
    )  # 30, 20 / 25
    np.testing.assert_allclose(perplexity_weights(np.full(3, np.nan), [0, 2]), [1.0, 0.0, 1.0])
    big = perplexity_weights(
        np.array([1000.0, 1000.0 + np.log(3.0)]), [0, 1]
    )  # no overflow at large losses
    np.testing.assert_allclose(big, [0.5, 1.5])


def test_cross_alignment_is_unbiased_when_domains_get_different_micro_batch_counts():
    """Monte Carlo against the noiseless scores: each domain's gradient is its true mean plus the mean
    of n_i micro-batches' noise. The total score of the domain with one micro-batch is inflated by
    tr Cov / n_i (its own noise, squared); the cross score is not, whatever n_i."""
    rng = np.random.default_rng(0)
    true = rng.normal(size=(3, 40)) * 0.3
    counts, sigma, draws = np.array([1, 2, 4]), 1.0, 4000
    noisy = true[None] + rng.normal(size=(draws, 3, 40)) * sigma / np.sqrt(counts)[None, :, None]
    sampled = torch.ones(3, dtype=torch.bool)
    total = np.mean([total_alignment(torch.tensor(g), sampled) for g in noisy], axis=0)
    cross = np.mean([cross_alignment(torch.tensor(g), sampled) for g in noisy], axis=0)
    exact_cross = true @ true.sum(axis=0) - (true * true).sum(axis=1)
    exact_total = true @ true.sum(axis=0)
    np.testing.assert_allclose(cross, exact_cross, atol=0.25)  # Monte Carlo error ~ 0.1
    np.testing.assert_allclose(
        total - exact_total, 40 * sigma**2 / counts, rtol=0.1
    )  # the bias, 40, 20, 10


def test_running_scale_hand_computed():
    scale = RunningScale(beta=0.5, clip=10.0)
    out1 = scale(np.array([2.0, -4.0, np.nan]))  # m1 = 0.5 * 3 = 1.5, scale = 1.5 / 0.5 = 3
    np.testing.assert_allclose(out1[:2], [2 / 3, -4 / 3])
    assert np.isnan(out1[2])
    out2 = scale(np.array([1.0, 1.0, 1.0]))  # m2 = 0.75 + 0.5 = 1.25, scale = 1.25 / 0.75
    np.testing.assert_allclose(out2, np.full(3, 0.75 / 1.25))
    clipped = RunningScale(beta=0.0, clip=1.5)(np.array([1.0, 10.0]))  # scale 5.5
    np.testing.assert_allclose(clipped, [1 / 5.5, 1.5])  # 10 / 5.5 = 1.82 clipped at 1.5
    state = scale.state_dict()
    again = RunningScale(beta=0.5, clip=10.0)
    again.load_state_dict(state)
    np.testing.assert_allclose(again(np.array([3.0])), scale(np.array([3.0])))
    assert (
        np.isnan(scale(np.array([np.nan, np.nan]))).all() and scale.count == 3
    )  # nothing scored: unchanged


def test_running_scale_window_averages_the_last_scored_steps():
    """signals.score_window W: each domain's mean scaled score over the last W steps that scored
    anything, NaN entries skipped, by hand (beta 0.5, W 2)."""
    scale = RunningScale(beta=0.5, clip=10.0, window=2)
    out1 = scale(np.array([2.0, np.nan]))  # m1 = 1, scale = 1 / 0.5 = 2: [1, NaN]
    np.testing.assert_allclose(out1[0], 1.0)
    assert np.isnan(out1[1])
    out2 = scale(np.array([4.0, 2.0]))  # m2 = 0.5 + 1.5 = 2, scale = 2 / 0.75: [1.5, 0.75]
    np.testing.assert_allclose(out2, [(1.0 + 1.5) / 2, 0.75])  # domain 1: its one finite score
    assert np.isnan(scale(np.array([np.nan, np.nan]))).all()  # no score: the window is unchanged
    state = scale.state_dict()
    out3 = scale(np.array([0.0, 6.0]))  # m3 = 1 + 1.5 = 2.5, scale = 2.5 / 0.875: [0, 2.1]
    np.testing.assert_allclose(out3, [(1.5 + 0.0) / 2, (0.75 + 2.1) / 2])  # step 1 left the window
    again = RunningScale(beta=0.5, clip=10.0, window=2)
    again.load_state_dict(state)  # the window survives a checkpoint, NaN included
    np.testing.assert_allclose(again(np.array([0.0, 6.0])), out3)
    plain = RunningScale(beta=0.5, clip=10.0)  # W = 1: the scaled scores themselves
    plain(np.array([2.0, np.nan]))
    np.testing.assert_allclose(plain(np.array([4.0, 2.0])), [1.5, 0.75])
    with pytest.raises(ValueError, match="window"):
        RunningScale(window=0)


@pytest.mark.parametrize("score", ["total", "cross", "eval", "evalppl", "evalfair", "evaladam"])
def test_trainer_total_score_equals_per_domain_autograd(corpus, score):
    """signals.score total (cross) under weighted coverage: every domain scored, s_i = <g_i, sum_j g_j>
    (sum over j != i) / scale with g_i each domain's mean gradient by separate autograd passes, and
    the effective mix = w. eval: s_i = <g_i, g_ref> / scale, g_ref the gradient of the reference
    micro-batch (rows of the evaluation domains only: here the first two), replayed by hand; evalppl:
    each reference row's loss weighted by exp(its domain's last training loss) / their mean; evalfair:
    by fair_weights of the decreases the first step measured."""
    variant = {
        "evalppl": {"eval_weighting": "perplexity"},
        "evalfair": {"eval_weighting": "fair"},
        "evaladam": {"geometry": "adam"},
    }
    signals_cfg = {"score": "eval", **variant[score]} if score in variant else {"score": score}
    cfg = tiny_config(
        train={"coverage": "weighted", "eval_domains": list(corpus.domains[:2])},
        signals=signals_cfg,
    )
    trainer = LMTrainer(cfg, corpus, device="cpu")
    trainer.step(np.full(3, 1 / 3))
    replay = copy.deepcopy(trainer)
    weights = np.array([0.5, 0.3, 0.2])
    signals = trainer.step(weights)
    plan, lam = replay.sampler.allocate(weights, cfg.train.grad_accum, "weighted")
    per_domain: dict[int, list[np.ndarray]] = {}
    for d in plan:
        loss = replay._loss(replay.sampler.batch(int(d)))
        grads = torch.autograd.grad(loss, replay.align_params)
        per_domain.setdefault(int(d), []).append(torch.cat([g.flatten() for g in grads]).numpy())
    means = np.stack([np.mean(per_domain[i], axis=0) for i in range(3)]).astype(np.float64)
    if score.startswith("eval"):
        ref_batch, rows = replay.sampler.reference_batch([0, 1])
        per_row = [replay._loss(ref_batch[r : r + 1]) for r in range(len(rows))]
        ppl = np.exp(replay.tracker.last_losses[:2])  # the first step's losses: both domains seen
        c = {
            "eval": np.ones(2),
            "evalppl": ppl / ppl.mean(),
            "evalfair": fair_weights(replay.reference.progress.decrease, [0, 1]),
            "evaladam": np.ones(2),
        }[score]
        assert score != "evalfair" or np.isfinite(replay.reference.progress.decrease[:2]).all()
        ref = torch.autograd.grad(
            sum(float(c[d]) * loss for d, loss in zip(rows, per_row)) / len(rows),
            replay.align_params,
        )
        ref = torch.cat([g.flatten() for g in ref]).numpy().astype(np.float64)
        if score == "evaladam":  # AdamW's step scale after the first step, by hand
            opt, b2 = replay.optimizer, replay.optimizer.param_groups[0]["betas"][1]
            v = np.concatenate(
                [opt.state[p]["exp_avg_sq"].flatten().numpy() for p in replay.align_params]
            )
            ref = ref / (np.sqrt(v / (1 - b2)) + opt.param_groups[0]["eps"])
        raw = means @ ref
    else:
        raw = means @ means.sum(axis=0) - (0.0 if score == "total" else (means * means).sum(axis=1))
    expected = replay.score_scale(raw)
    np.testing.assert_allclose(signals.scores, expected, rtol=2e-3)
    np.testing.assert_allclose(signals.effective, weights, rtol=1e-12)
    assert np.isfinite(signals.scores).all()


def test_zero_weight_domain_is_scored_without_moving_the_model(corpus):
    """weighted coverage: a domain with weight 0 still gets a micro-batch and a score, but no say in
    the update (its loss weight is 0, so the step equals one on the other domains alone)."""
    cfg = tiny_config(train={"coverage": "weighted"})
    trainer = LMTrainer(cfg, corpus, device="cpu")
    signals = trainer.step(np.array([0.0, 0.5, 0.5]))
    assert np.isfinite(signals.scores).all() and signals.counts[0] > 0
    assert signals.effective[0] == 0.0


@pytest.mark.parametrize("score", ["paper", "total"])
def test_trainer_paper_scores_equal_per_domain_autograd(corpus, score):
    """raw_scores are the paper's whatever signals.score says (the alignment mixer reads them)."""
    cfg = tiny_config(signals={"score": score})
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
    if score == "paper":
        np.testing.assert_allclose(signals.scores, exp_z, rtol=1e-3, atol=1e-4)
    else:
        unsampled = [i for i in range(3) if i not in per_domain]
        assert all(np.isnan(signals.scores[i]) for i in unsampled)
    counts = np.array([len(per_domain.get(i, [])) for i in range(3)]) * cfg.train.micro_batch_size
    np.testing.assert_array_equal(signals.counts, counts)


def test_total_alignment_of_one_domain_in_float64_and_running_scale_edges():
    """One sampled domain scores its squared norm (not NaN); float32 gradients are summed in float64
    (matches a float64 brute force to 1e-12). RunningScale: beta = 1 is refused, negative scores are
    clipped at -clip, all-zero scores give zeros (not 0/0), and a scale below 1 still divides."""
    g = np.array([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]], dtype=np.float32)
    s = total_alignment(torch.tensor(g), torch.tensor([True, False]))
    assert s[0] == pytest.approx(
        float((g[0].astype(np.float64) ** 2).sum()), rel=1e-12
    ) and np.isnan(s[1])
    rng = np.random.default_rng(0)
    many = rng.normal(size=(4, 1000)).astype(np.float32)
    brute = many.astype(np.float64) @ many.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(
        total_alignment(torch.tensor(many), torch.ones(4, dtype=torch.bool)), brute, rtol=1e-12
    )
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1.0"):
        RunningScale(beta=1.0)
    np.testing.assert_allclose(
        RunningScale(beta=0.0, clip=1.5)(np.array([-10.0, 1.0])), [-1.5, 1 / 5.5]
    )
    np.testing.assert_array_equal(RunningScale(beta=0.0)(np.zeros(3)), np.zeros(3))
    np.testing.assert_allclose(
        RunningScale(beta=0.0)(np.array([0.01, 0.03])), [0.5, 1.5]
    )  # scale 0.02


def test_state_is_float32_and_clipped_at_the_trackers_own_z_clip():
    """The observation space is float32 (also the initial state), and z_clip is the tracker's, not
    znorm_clip's default: with z_clip 0.5 no feature but progress leaves [-0.5, 0.5]."""
    tracker = StateTracker(3, 2, progress_scale=1.0, z_clip=0.5)
    assert tracker.initial().dtype == np.float32 and tracker.initial().shape == (state_dim(3, 2),)
    s = tracker.build(
        np.array([1.0, 2.0, 9.0]),
        np.array([1, 1, 6]),
        np.array([1.0, 5.0]),
        np.array([0.1, 0.2]),
        progress=0.5,
    )
    assert s.dtype == np.float32
    assert np.abs(s[:-1]).max() == np.float32(0.5) and s[-1] == np.float32(0.5)
