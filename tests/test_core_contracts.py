"""The pure core's contracts that mutation testing (mutmut, BENCHMARKS.md) found unchecked: the
mixer factory's wiring, defaults, refusals and their messages, the alignment mixer's update
written out by hand, ODM's state round trip, loss-decrease scores, the state tracker's state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import save_policy
from acodm_ray.config import MixerConfig
from acodm_ray.mixers import AlignmentMixer, ODMMixer, StaticMixer, build_mixer
from acodm_ray.mixers.actor import ActorMixer, policy_progress_scale
from acodm_ray.mixers.static import file_mixer, natural_mixer, read_weights_file, uniform_mixer
from acodm_ray.signals import StateTracker, loss_decrease_scores
from acodm_ray.train_step import StepSignals

NAN = float("nan")
DOMAINS = ["a", "b", "c"]
NATURAL = np.array([0.5, 0.3, 0.2])


def signals(
    losses=(NAN, NAN, NAN), raw_scores=(0.0, 0.0, 0.0), lr=1e-3, finite=True
) -> StepSignals:
    K = len(losses)
    return StepSignals(
        step=1,
        loss=1.0,
        losses=np.array(losses, float),
        counts=np.ones(K),
        scores=np.zeros(K),
        raw_scores=np.array(raw_scores, float),
        state=np.zeros(3 * K + 1),
        weights=np.full(K, 1 / K),
        lr=lr,
        grad_norm=1.0,
        tokens=1,
        seconds=0.0,
        finite=finite,
    )


# ------------------------------------------------------------------------------ the factory


def test_build_mixer_wires_every_setting_through(tmp_path):
    uni = build_mixer(MixerConfig(name="uniform"), DOMAINS, NATURAL)
    assert isinstance(uni, StaticMixer) and uni.name == "uniform" and uni.domains == DOMAINS
    np.testing.assert_allclose(uni.weights(), [1 / 3] * 3)
    nat = build_mixer(MixerConfig(name="natural"), DOMAINS, NATURAL)
    assert nat.name == "natural"
    np.testing.assert_allclose(nat.weights(), NATURAL)
    odm = build_mixer(MixerConfig(name="odm", odm_variant="exp3", odm_alpha=0.25), DOMAINS, NATURAL)
    assert isinstance(odm, ODMMixer) and odm.name == "odm" and odm.domains == DOMAINS
    assert (odm.variant, odm.alpha) == ("exp3", 0.25)
    np.testing.assert_allclose(odm.weights(), NATURAL)  # starts at the natural proportions
    al = build_mixer(
        MixerConfig(
            name="alignment",
            alignment_mu=0.01,
            alignment_clip_min=-1.0,
            alignment_clip_max=2.0,
            alignment_floor=0.1,
        ),
        DOMAINS,
        NATURAL,
    )
    assert isinstance(al, AlignmentMixer) and al.name == "alignment"
    assert (al.mu, al.clip_min, al.clip_max, al.floor) == (0.01, -1.0, 2.0, 0.1)
    path = tmp_path / "w.yaml"
    path.write_text("a: 0.2\nb: 0.3\nc: 0.5\n")
    fm = build_mixer(MixerConfig(name="file", weights_file=str(path)), DOMAINS, NATURAL)
    assert fm.name == "file"
    np.testing.assert_allclose(fm.weights(), [0.2, 0.3, 0.5])
    with pytest.raises(
        ValueError, match="^mixer.name is 'file' but mixer.weights_file is not set$"
    ):
        build_mixer(MixerConfig(name="file"), DOMAINS, NATURAL)


def test_static_mixers_names_and_copies():
    assert uniform_mixer(DOMAINS).name == "uniform"
    assert natural_mixer(DOMAINS, NATURAL).name == "natural"
    assert StaticMixer(DOMAINS, NATURAL).name == "static"
    m = natural_mixer(DOMAINS, NATURAL)
    m.weights()[0] = 9.0  # a copy: the mixer's weights cannot be changed from outside
    np.testing.assert_allclose(m.weights(), NATURAL)


def test_weights_files_by_suffix(tmp_path):
    as_json = tmp_path / "w.json"
    as_json.write_text(json.dumps({"a": 0.2, "b": 0.3, "c": 0.5}))
    np.testing.assert_allclose(read_weights_file(as_json, DOMAINS), [0.2, 0.3, 0.5])
    assert file_mixer(DOMAINS, as_json).name == "file"
    yaml_in_json = tmp_path / "y.json"  # a .json file is parsed as JSON, not YAML
    yaml_in_json.write_text("a: 0.2\nb: 0.3\nc: 0.5\n")
    with pytest.raises(ValueError, match=r"weights file .*y\.json cannot be parsed: "):
        read_weights_file(yaml_in_json, DOMAINS)
    upper = tmp_path / "w.JSON"  # any other suffix is YAML (JSON is YAML too)
    upper.write_text(json.dumps({"a": 0.2, "b": 0.3, "c": 0.5}))
    np.testing.assert_allclose(read_weights_file(upper, DOMAINS), [0.2, 0.3, 0.5])


def test_mixer_domains_are_checked_with_messages():
    with pytest.raises(ValueError, match="^a mixer needs at least one domain$"):
        AlignmentMixer([])
    with pytest.raises(ValueError, match=r"^duplicate domain names in \['a', 'b', 'a'\]$"):
        AlignmentMixer(["a", "b", "a"])


# ------------------------------------------------------------------------- alignment mixer


def test_alignment_defaults_and_refusals():
    m = AlignmentMixer(DOMAINS)
    assert (m.mu, m.clip_min, m.clip_max, m.floor, m.t) == (1e-3, -5.0, 5.0, 0.05, 0)
    np.testing.assert_allclose(m.log_weights, np.full(3, -np.log(3)))
    np.testing.assert_allclose(m.weights(), [1 / 3] * 3)
    with pytest.raises(ValueError, match=r"^alignment mu must be positive, got 0$"):
        AlignmentMixer(DOMAINS, mu=0)
    with pytest.raises(ValueError, match=r"^alignment clip_min \(2\) must be <= clip_max \(1\)$"):
        AlignmentMixer(DOMAINS, clip_min=2, clip_max=1)
    with pytest.raises(ValueError, match=r"^alignment floor must be in \[0, 1\], got 1.5$"):
        AlignmentMixer(DOMAINS, floor=1.5)
    AlignmentMixer(DOMAINS, clip_min=1.0, clip_max=1.0)  # the bounds themselves are allowed
    np.testing.assert_allclose(AlignmentMixer(DOMAINS, floor=0.0).weights(), [1 / 3] * 3)
    np.testing.assert_allclose(AlignmentMixer(DOMAINS, floor=1.0).weights(), [1 / 3] * 3)


def test_alignment_update_equals_the_rule_written_out():
    """log w += (lr / mu) clip(s, -5, 5); log w -= max; w = 0.95 softmax + 0.05 / K."""
    m = AlignmentMixer(DOMAINS)
    w = m.update_from_scores([7.0, -9.0, 0.5], lr=1e-4)  # 7 and -9 are clipped to 5 and -5
    logw = np.full(3, -np.log(3)) + 0.1 * np.array([5.0, -5.0, 0.5])
    logw -= logw.max()
    np.testing.assert_allclose(m.log_weights, logw, rtol=1e-12)
    assert m.log_weights.max() == 0.0 and m.t == 1
    soft = np.exp(logw) / np.exp(logw).sum()
    np.testing.assert_allclose(w, 0.95 * soft + 0.05 / 3, rtol=1e-12)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    m.update_from_scores([0, 0, 0], lr=1e-4)
    assert m.t == 2
    np.testing.assert_allclose(m.log_weights, logw, rtol=1e-12)  # zero scores move nothing
    # clip_min is the configured one, not -inf
    low = AlignmentMixer(DOMAINS, clip_min=-1.0)
    low.update_from_scores([0.0, -9.0, 0.0], lr=1e-3)
    np.testing.assert_allclose(low.log_weights, [0.0, -1.0, 0.0], atol=1e-12)
    # integer scores are scores too
    ints = AlignmentMixer(DOMAINS)
    ints.update_from_scores(np.array([1, 0, 0]), lr=1e-3)
    np.testing.assert_allclose(ints.log_weights, [0.0, -1.0, -1.0], atol=1e-12)


def test_alignment_refusals_state_and_update():
    m = AlignmentMixer(DOMAINS)
    with pytest.raises(ValueError, match=r"^expected 3 alignment scores, got shape \(2,\)$"):
        m.update_from_scores([1.0, 2.0], lr=1e-3)
    m.update(signals(raw_scores=(1.0, 0.0, 0.0), finite=False))  # a skipped step teaches nothing
    assert m.t == 0
    m.update(signals(raw_scores=(1.0, 0.0, 0.0), lr=1e-3))
    assert m.t == 1 and m.log_weights[0] == 0.0 and m.log_weights[1] == pytest.approx(-1.0)
    other = AlignmentMixer(DOMAINS)
    other.load_state_dict(json.loads(json.dumps(m.state_dict())))
    assert other.t == 1 and other.log_weights.dtype == np.float64
    np.testing.assert_array_equal(other.weights(), m.weights())
    with pytest.raises(ValueError, match="^alignment mixer state has 2 domains, this mixer 3$"):
        other.load_state_dict({"log_weights": [0.0, 0.0], "t": 0})


# ------------------------------------------------------------------------------------- ODM


def test_odm_defaults_and_refusals():
    odm = ODMMixer(DOMAINS, NATURAL)
    assert (odm.variant, odm.alpha, odm.t) == ("smoothed_mean", 0.5, 0)
    assert odm.eps == pytest.approx(1 / 3)
    with pytest.raises(
        ValueError, match="^unknown ODM variant 'ucb'; choose smoothed_mean or exp3$"
    ):
        ODMMixer(DOMAINS, NATURAL, "ucb")
    with pytest.raises(ValueError, match=r"^expected 3 losses, got shape \(2,\)$"):
        odm.update_from_losses([1.0, 2.0])
    np.testing.assert_array_equal(
        odm.update_from_losses([NAN, NAN, NAN]), NATURAL
    )  # nothing sampled
    assert odm.t == 0
    odm.update(signals(losses=(1.0, NAN, 2.0)))  # update() learns from the step's losses
    assert odm.t == 1
    with pytest.raises(
        ValueError, match="^ODM state is for variant 'smoothed_mean', this mixer is 'exp3'$"
    ):
        ODMMixer(DOMAINS, NATURAL, "exp3").load_state_dict(odm.state_dict())


def test_exp3_eps_of_the_previous_step_survives_a_round_trip():
    """exp3's logits use the previous step's exploration rate: a restored mixer must continue with it."""
    a = ODMMixer(DOMAINS, NATURAL, "exp3")
    a.update_from_losses([2.0, NAN, 1.0])
    state = json.loads(json.dumps(a.state_dict()))
    b = ODMMixer(DOMAINS, NATURAL, "exp3")
    b.load_state_dict(state)
    assert b.eps == a.eps and b.t == a.t and b.probabilities.dtype == np.float64
    np.testing.assert_array_equal(b.weights(), a.weights())
    np.testing.assert_array_equal(
        b.update_from_losses([1.0, 3.0, NAN]), a.update_from_losses([1.0, 3.0, NAN])
    )
    np.testing.assert_array_equal(b.estimated_reward, a.estimated_reward)


def test_exp3_stays_finite_and_normalised_with_large_rewards():
    odm = ODMMixer(DOMAINS, NATURAL, "exp3")
    for _ in range(6):  # eps_t < 1/K from t = 4 on: the weights leave uniform
        w = odm.update_from_losses(
            [5000.0, 1.0, NAN]
        )  # rewards ~ 1000: exp() without the shift overflows
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w[0] > w[1]
    sm = ODMMixer(DOMAINS, NATURAL)
    w = sm.update_from_losses([3.0, 1.0, 2.0])
    assert w.sum() == pytest.approx(1.0, abs=1e-12)


def test_odm_accepts_integer_losses():
    a, b = ODMMixer(DOMAINS, NATURAL), ODMMixer(DOMAINS, NATURAL)
    np.testing.assert_array_equal(
        a.update_from_losses(np.array([3, 1, 2])), b.update_from_losses([3.0, 1.0, 2.0])
    )


# ----------------------------------------------------------------------------- actor mixer


def test_actor_mixer_name_dir_and_progress_scale(tmp_path):
    torch.manual_seed(0)
    out = save_policy(
        tmp_path / "p", Actor(12, 3, 8, 1), DOMAINS, {"dim": 12, "progress_scale": 100.0}, {}
    )
    m = ActorMixer(out, DOMAINS, state_dim=12)
    assert m.name == "acodm" and m.policy_dir == str(out) and isinstance(m.policy_dir, str)
    assert policy_progress_scale({"progress_scale": 10}) == 10.0
    assert (
        policy_progress_scale({"progress_scale": 10, "state_spec": {"progress_scale": 5}}) == 10.0
    )
    assert policy_progress_scale({"state_spec": {"progress_scale": 5}}) == 5.0
    assert policy_progress_scale({"state_spec": None}) is None and policy_progress_scale({}) is None


# -------------------------------------------------------------------------------- signals


def brute_force_loss_decrease(previous, losses, z_clip=3.0):
    idx = [i for i in range(len(losses)) if np.isfinite(previous[i]) and np.isfinite(losses[i])]
    out = np.zeros(len(losses))
    d = np.array([previous[i] - losses[i] for i in idx])
    if len(idx) > 1:
        out[idx] = np.clip((d - d.mean()) / (d.std(ddof=1) + 1e-8), -z_clip, z_clip)
    return out


def test_loss_decrease_scores_equal_brute_force():
    previous = np.array([2.0, 3.0, NAN, 1.5, 4.0])
    losses = np.array([1.0, 2.9, 1.0, NAN, 3.0])
    got = loss_decrease_scores(previous, losses)
    np.testing.assert_allclose(got, brute_force_loss_decrease(previous, losses), rtol=1e-10)
    assert got[2] == 0.0 and got[3] == 0.0 and got.dtype == np.float64
    assert got[0] > 0 > got[1]  # the bigger decrease scores higher
    clipped = loss_decrease_scores(
        np.array([10.0, 1, 1, 1, 1, 1, 1, 1, 1, 1]), np.zeros(10), z_clip=1.5
    )
    assert clipped[0] == 1.5
    np.testing.assert_array_equal(loss_decrease_scores([NAN, 1.0], [1.0, NAN]), [0.0, 0.0])
    np.testing.assert_allclose(
        loss_decrease_scores([3, 1], [1, 1]), brute_force_loss_decrease([3, 1], [1, 1])
    )


def test_state_tracker_state_round_trip():
    a = StateTracker(num_domains=3, num_tracked=2)
    fresh = a.state_dict()
    assert fresh["prev_losses"] is None and torch.isnan(fresh["last_losses"]).all()
    rng = np.random.default_rng(0)
    for _ in range(2):
        a.build(rng.random(3), rng.random(3), rng.random(2), rng.random(2), 0.5)
    state = a.state_dict()
    b = StateTracker(num_domains=3, num_tracked=2)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.last_losses, a.last_losses)
    np.testing.assert_array_equal(b.prev_losses, a.prev_losses)
    assert b.prev_losses is not a.prev_losses and b.last_losses is not a.last_losses  # copies
    args = (np.array([0.5, NAN, 0.1]), rng.random(3), rng.random(2), rng.random(2), 0.75)
    np.testing.assert_array_equal(b.build(*args), a.build(*args))
    c = StateTracker(num_domains=3, num_tracked=2)
    c.load_state_dict(fresh)
    assert c.prev_losses is None


# ---------------------------------------------------------------------------------- DDPG


def test_explore_subtracts_uniform_noise_clamps_and_renormalises():
    from acodm_ray.agent.ddpg import explore

    w = torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.2, 0.2]], dtype=torch.float64)
    got = explore(w, 0.25, torch.Generator().manual_seed(0))
    u = torch.rand(w.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = (w - 0.25 * u).clamp_min(0.0)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, noisy / noisy.sum(dim=-1, keepdim=True), rtol=0, atol=0)
    again = explore(w, 0.25, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, got, rtol=0, atol=0)  # the generator decides the noise
    one = explore(w[0], 0.25, torch.Generator().manual_seed(1))  # a single row (1-D) works too
    assert one.shape == (3,) and float(one.sum()) == pytest.approx(1.0)
    gone = explore(torch.tensor([[0.1, 0.1, 0.8]]), 1000.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        gone, torch.tensor([[0.1, 0.1, 0.8]])
    )  # all noise: the input is kept
    assert explore(w, 0.0) is w
    with pytest.raises(ValueError, match=r"^exploration noise must be >= 0, got -0.1$"):
        explore(w, -0.1)


def test_done_mask_accepts_bool_flags_and_names_the_row_counts():
    from acodm_ray.agent.ddpg import _done_mask

    like = torch.zeros(3, 2, dtype=torch.float64)
    mask = _done_mask(torch.tensor([True, False, True]), like)
    assert mask.dtype == torch.float64 and mask.shape == (3, 1)
    torch.testing.assert_close(mask, torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^dones has 2 rows, the batch has 3$"):
        _done_mask(torch.zeros(2, 1), torch.zeros(3, 4))


# ------------------------------------------------------------------------------- sampler


def test_check_weights_accepts_zeros_and_returns_an_exact_float_distribution():
    from acodm_ray.sampler import WeightsError, check_weights

    w = check_weights([1, 0, 0], DOMAINS)  # a zero weight is a weight; ints are fine
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w, [1.0, 0.0, 0.0])
    near = check_weights([0.5, 0.25, 0.25 + 5e-5], DOMAINS)  # within atol: renormalised exactly
    assert near.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(near, np.array([0.5, 0.25, 0.25 + 5e-5]) / 1.00005, rtol=1e-15)
    with pytest.raises(WeightsError, match=r"^weights are negative for domain\(s\) \['b'\]"):
        check_weights([1.5, -0.5, 0.0], DOMAINS)


def _streams(n: int = 100):
    return {d: np.arange(i * 1000, i * 1000 + n) for i, d in enumerate(DOMAINS)}


def test_sampler_stream_length_bound_and_window_starts():
    from acodm_ray.sampler import MixtureSampler

    exact = MixtureSampler(
        _streams(17), DOMAINS, seq_len=16, micro_batch_size=4, seed=0
    )  # one window fits
    rows = exact.batch(1)
    assert rows.shape == (4, 17) and rows.dtype == torch.int64
    np.testing.assert_array_equal(
        rows.numpy(), np.tile(np.arange(1000, 1017), (4, 1))
    )  # it starts at 0
    with pytest.raises(
        ValueError,
        match=r"^domain 'a' has 16 tokens, fewer than one training sequence "
        r"\(seq_len \+ 1 = 17\)$",
    ):
        MixtureSampler(_streams(16), DOMAINS, seq_len=16, micro_batch_size=4, seed=0)


def test_sampler_random_streams_are_the_documented_ones():
    """The plan (which domain each micro-batch reads) comes from [seed, 0] and is the same on
    every rank; each rank's windows come from [seed, 1, rank]; rank defaults to 0."""
    from acodm_ray.sampler import MixtureSampler

    args = (_streams(), DOMAINS, 8, 3)
    r0, r0_default, r1 = (
        MixtureSampler(*args, seed=5, rank=0),
        MixtureSampler(*args, seed=5),
        MixtureSampler(*args, seed=5, rank=1),
    )
    w = np.array([0.2, 0.3, 0.5])
    np.testing.assert_array_equal(
        r0.plan(w, 6), np.random.default_rng([5, 0]).choice(3, size=6, p=w)
    )
    np.testing.assert_array_equal(
        r1.plan(w, 6), np.random.default_rng([5, 0]).choice(3, size=6, p=w)
    )  # any rank
    starts = np.random.default_rng([5, 1, 1]).integers(0, 100 - 8, size=3)
    np.testing.assert_array_equal(r1.batch(0).numpy()[:, 0], starts)
    np.testing.assert_array_equal(r0_default.batch(2).numpy(), r0.batch(2).numpy())
    assert not np.array_equal(
        MixtureSampler(*args, seed=5, rank=1).batch(2).numpy(),
        MixtureSampler(*args, seed=5, rank=0).batch(2).numpy(),
    )


# ------------------------------------------------------------------------ signals (more)


def test_znorm_clip_is_float64_and_clips_both_sides():
    from acodm_ray.signals import znorm_clip

    x = torch.tensor([0.0] * 19 + [100.0], dtype=torch.float32)
    z = znorm_clip(x)
    assert z.dtype == torch.float64 and float(z.max()) == 3.0
    assert float(znorm_clip(-x).min()) == -3.0


def test_alignment_scores_default_clips():
    from acodm_ray.signals import alignment_scores

    g = torch.zeros(20, 4, dtype=torch.float64)
    g[:, 0] = 3.0
    g[0] = torch.tensor([0.0, 3.0, 0.0, 0.0])  # orthogonal to the others
    g[1, 0] = 1e5  # aligned with 18 others of norm 3: raw ~ 20 * 18 * 3 = 1080 before the clip
    raw, z = alignment_scores(g, torch.ones(20, dtype=torch.bool))
    assert raw[1] == 999.0
    g[1, 0] = -1e5  # opposed: clipped at -999
    raw, z = alignment_scores(g, torch.ones(20, dtype=torch.bool))
    assert raw[1] == -999.0 and z.min() == -3.0  # and the default z clip is 3


def test_state_tracker_defaults_and_unknown_losses_start_at_zero():
    t = StateTracker(num_domains=3, num_tracked=1)
    assert (t.progress_scale, t.z_clip) == (100.0, 3.0)
    np.testing.assert_array_equal(t.fill_losses(np.array([NAN, NAN, NAN])), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(t.fill_losses(np.array([2.0, NAN, NAN])), [2.0, 0.0, 0.0])
    u = StateTracker(num_domains=3, num_tracked=1)
    np.testing.assert_array_equal(
        u.fill_losses(np.array([2.0, 4.0, NAN])), [2.0, 4.0, 3.0]
    )  # the mean
    v = StateTracker(num_domains=3, num_tracked=1)
    a = v.build(np.array([1, 2, 3]), np.array([1, 1, 2]), np.ones(1), np.ones(1), 0.5)
    b = StateTracker(num_domains=3, num_tracked=1).build(
        np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0]), np.ones(1), np.ones(1), 0.5
    )
    np.testing.assert_array_equal(a, b)  # integer losses and counts are read as floats


def test_trim_jsonl_keeps_only_the_accepted_records_and_leaves_a_missing_file_alone(tmp_path):
    """The one resume-trimming of every JSON-lines log (metrics, rank logs, events, RLlib iterations)."""
    import json

    from acodm_ray.rundir import trim_jsonl

    path = tmp_path / "log.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)) + "\n"
    )  # a blank last line too
    trim_jsonl(path, lambda record: record["step"] <= 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    trim_jsonl(tmp_path / "absent.jsonl", lambda record: True)
    assert not (tmp_path / "absent.jsonl").exists()
