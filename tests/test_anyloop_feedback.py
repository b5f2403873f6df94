"""MixingFeedback: the per-domain signals an ordinary loop gives each mixer, checked against
brute-force computations; rank 0 decides for every rank; exact resume; refusals."""

import io
import threading

import numpy as np
import pytest
import torch
from test_anyloop_dataset import SPAN, sources
from torch.utils.data import default_collate

from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import save_policy
from acodm_ray.anyloop import MixingDataset, MixingFeedback
from acodm_ray.config import ModelConfig, SignalConfig
from acodm_ray.mixers.actor import PolicyMismatchError
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.mixers.static import StaticMixer
from acodm_ray.model import build_model

DOMAINS = ["d0", "d1", "d2"]
TINY = ModelConfig(hidden_size=32, num_layers=2, num_heads=2)
SMALL_AGENT = AgentConfig(
    actor_hidden=16,
    actor_layers=1,
    critic_hidden=16,
    critic_layers=1,
    batch_size=2,
    replay_capacity=100,
    warmup_fraction=0.34,
    warmup_updates=2,
)


def make(
    mixer="odm", steps=4, rank=0, world_size=1, batch_size=6, grad_accum=1, feedback=True, **kw
):
    model = build_model(TINY, 3 * SPAN, 3 * SPAN - 1, seed=0)
    ds = MixingDataset(
        sources(),
        seq_len=16,
        seed=0,
        batch_size=batch_size,
        grad_accum=grad_accum,
        delay=0,
        rank=rank,
        world_size=world_size,
    )
    if not feedback:
        return model, ds, None
    fb = MixingFeedback(
        model, ds, total_steps=steps, mixer=mixer, signals=SignalConfig(alignment_layers=1), **kw
    )
    return model, ds, fb


def batch_of(gen, n):
    return default_collate([next(gen) for _ in range(n)])


def domain_token_means(model, batch):
    """Brute force: each domain's mean next-token loss over its examples' tokens."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    out = np.full(3, np.nan)
    for d in range(3):
        rows = batch["domain"] == d
        if rows.any():
            out[d] = float(
                torch.nn.functional.cross_entropy(
                    logits[rows, :-1].reshape(-1, logits.shape[-1]),
                    batch["labels"][rows, 1:].reshape(-1),
                )
            )
    return out


def test_step_signals_match_a_brute_force_computation_and_odm_learns_from_them():
    model, ds, fb = make("odm")
    seen = []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(sorted(kwargs)), with_kwargs=True
    )
    batch = batch_of(iter(ds), 6)
    expected = domain_token_means(model, batch)
    outputs = model(
        **{k: batch[k] for k in ("input_ids", "domain")}
    )  # the pre-hook takes `domain` out
    assert seen[-1] == ["input_ids"]  # the model never sees it
    loss = fb.compute_loss(outputs, batch["labels"])
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(
            outputs.logits[:, :-1].reshape(-1, 3 * SPAN), batch["labels"][:, 1:].reshape(-1)
        )
    torch.testing.assert_close(loss, direct)
    loss.backward()
    signals = fb.step()
    np.testing.assert_allclose(
        signals.losses, expected, rtol=1e-5
    )  # NaN where a domain was not drawn
    np.testing.assert_array_equal(signals.counts, np.bincount(batch["domain"], minlength=3))
    assert signals.state.shape == (fb.state_spec["dim"],) == (3 * 3 + 2 * 1 + 1,)
    assert signals.state[-1] == pytest.approx(1 / 4)  # progress t / T
    odm = ODMMixer(DOMAINS, ds.natural_proportions())
    odm.update_from_losses(expected)
    np.testing.assert_allclose(fb.current, odm.weights(), rtol=1e-6)
    np.testing.assert_allclose(ds.history[-1], fb.current)  # published to the dataset


def test_per_domain_gradients_from_a_mixed_batch_equal_each_domains_own_gradient():
    lr_only = torch.optim.SGD(
        [torch.nn.Parameter(torch.zeros(1))], lr=0.1
    )  # the alignment mixer reads its lr
    model, ds, fb = make("alignment", optimizer=lr_only)
    batch = batch_of(iter(ds), 6)
    params = [module.weight for module, _ in fb.grads.layers]
    expected = {}
    for d in batch["domain"].unique().tolist():
        rows = batch["domain"] == d
        logits = model(input_ids=batch["input_ids"][rows]).logits
        loss_d = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 3 * SPAN), batch["labels"][rows, 1:].reshape(-1)
        )
        expected[d] = torch.cat([g.flatten() for g in torch.autograd.grad(loss_d, params)])
    loss = (
        fb.loss(model(input_ids=batch["input_ids"]).logits, batch) / 3
    )  # a loop's gradient accumulation
    loss.backward()
    tokens = fb.records.summed(fb.collective)[0][1]  # one process: the recorded sums
    sums = fb.grads.sums.clone()
    for d, g in expected.items():
        torch.testing.assert_close(sums[d] / tokens[d], g, rtol=1e-4, atol=1e-6)
    signals = fb.step()
    assert np.count_nonzero(signals.raw_scores) == len(
        expected
    )  # the alignment mixer got its scores
    assert not np.allclose(fb.current, 1 / 3)


@pytest.mark.parametrize("named", [True, False])
def test_named_targets_take_the_floor_off_your_loops_online_agent(named):
    """MixingFeedback(mixer="acodm-online"): with eval_domains named, the eval score's rule gives the
    online agent's actor no weight floor and the lcb objective; without, the floor 0.01 and the
    weighted objective (signals.resolve_named_targets)."""
    _, _, fb = make("acodm-online", eval_domains=["d0", "d1"] if named else None)
    assert fb.mixer.actor.floor == (0.0 if named else 0.01)
    assert fb.mixer.cfg.actor_objective == ("lcb" if named else "weighted")


@pytest.mark.parametrize("change", [{"eval_weighting": "fair"}, {"geometry": "adam"}])
def test_eval_score_variants_of_the_ray_path_are_refused_in_your_loop(change):
    """The reference-row weightings and the AdamW geometry are computed by LMTrainer only: asked of
    MixingFeedback they fail at construction, naming the setting, not silently ignored."""
    model, ds, _ = make("alignment", feedback=False)
    with pytest.raises(ValueError, match="your own loop computes the eval score"):
        MixingFeedback(
            model, ds, total_steps=4, signals=SignalConfig(**change), eval_domains=["d0"]
        )


def test_named_targets_give_your_loop_the_evaluation_aimed_reward():
    """MixingFeedback(eval_domains=...): signals.score "auto" is "eval", and each domain's score is
    <g_i, g_ref> / running scale with g_ref the mean-loss gradient of the reference rows (each from
    an evaluated domain) by a separate autograd pass; the loop's own .grad and the per-domain sums
    are untouched by the reference pass."""
    lr_only = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # params do not move
    model, ds, fb = make("alignment", optimizer=lr_only, eval_domains=["d0", "d1"])
    assert fb.sig.score == "eval" and fb.reference.eval_indices.tolist() == [0, 1]
    assert fb.sig.score_window == 8  # what the eval score brings (signals.resolve_named_targets)
    batch = batch_of(iter(ds), 6)
    params = [module.weight for module, _ in fb.grads.layers]
    own = {}
    for d in batch["domain"].unique().tolist():
        rows = batch["domain"] == d
        logits = model(input_ids=batch["input_ids"][rows]).logits
        loss_d = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 3 * SPAN), batch["labels"][rows, 1:].reshape(-1)
        )
        own[d] = torch.cat([g.flatten() for g in torch.autograd.grad(loss_d, params)])
    ids, domains = fb.reference.draw(1, 0)  # step 1 on rank 0: what step() will draw
    assert ids.shape == (6, 16) and set(domains.tolist()) <= {0, 1}
    ref_logits = model(input_ids=ids).logits
    ref_loss = torch.nn.functional.cross_entropy(
        ref_logits[:, :-1].reshape(-1, 3 * SPAN), ids[:, 1:].reshape(-1)
    )
    g_ref = torch.cat([g.flatten() for g in torch.autograd.grad(ref_loss, params)])
    fb.loss(model(input_ids=batch["input_ids"]).logits, batch).backward()
    before = [p.grad.clone() for p in model.parameters()]
    signals = fb.step()
    raw = np.full(3, np.nan)
    for d, g in own.items():
        raw[d] = float(g.double() @ g_ref.double())
    expected = raw / np.nanmean(np.abs(raw))  # the running scale's first step: mean |s|
    np.testing.assert_allclose(signals.scores, expected, rtol=1e-4, atol=1e-6)
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))
    assert float(fb.grads.sums.abs().sum()) == 0.0  # the reference pass was not recorded
    # "eval" named without targets: every domain is evaluated; "auto" without targets: "total"
    every = MixingFeedback(
        *make(feedback=False)[:2],
        4,
        "alignment",
        optimizer=lr_only,
        signals=SignalConfig(score="eval"),
    )
    assert every.reference.eval_indices.tolist() == [0, 1, 2]
    assert make("alignment", optimizer=lr_only)[2].reference is None
    with pytest.raises(ValueError, match="eval_domains"):
        make("alignment", optimizer=lr_only, eval_domains=["d9"])


class ThreadBus:
    """Two in-process "ranks" (threads) summing and broadcasting like torch.distributed."""

    def __init__(self):
        self.barrier = threading.Barrier(2)
        self.slots = [None, None]

    def collective(self, rank):
        bus = self

        class Collective:
            world_size = 2

            def __init__(self):
                self.rank = rank

            def sum_(self, t):
                bus.slots[rank] = t.clone()
                bus.barrier.wait()
                total = bus.slots[0] + bus.slots[1]
                bus.barrier.wait()
                return t.copy_(total)

            def broadcast_(self, t, src=0):
                if rank == src:
                    bus.slots[src] = t.clone()
                bus.barrier.wait()
                t.copy_(bus.slots[src])
                bus.barrier.wait()
                return t

        return Collective()


def test_rank_0_decides_and_every_rank_trains_on_its_weights():
    bus, results = ThreadBus(), {}
    own = {0: [0.7, 0.2, 0.1], 1: [0.1, 0.2, 0.7]}  # each rank's own mixer would say something else

    def rank_main(rank):
        model, ds, fb = make(
            StaticMixer(DOMAINS, np.array(own[rank])),
            rank=rank,
            world_size=2,
            collective=bus.collective(rank),
        )
        batch = batch_of(iter(ds), 6)
        fb.loss(model(input_ids=batch["input_ids"]).logits, batch).backward()
        signals = fb.step()
        results[rank] = (ds.history, signals.counts, batch["input_ids"])

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for history in (results[0][0], results[1][0]):
        np.testing.assert_allclose(np.stack(history), [own[0], own[0]])
    assert results[0][1].sum() == results[1][1].sum() == 12  # both ranks' sequences, summed
    assert not torch.equal(results[0][2], results[1][2])  # ranks trained on different examples


def train(model, opt, ds, fb, steps, grad_accum=2, batch_size=4):
    gen, losses = iter(ds), []
    for _ in range(steps):
        for _ in range(grad_accum):
            batch = batch_of(gen, batch_size)
            (fb.loss(model(input_ids=batch["input_ids"]).logits, batch) / grad_accum).backward()
        opt.step()
        opt.zero_grad()
        losses.append(fb.step().loss)
    return losses


@pytest.mark.parametrize("mixer", ["odm", "acodm-online"])
def test_saved_feedback_state_continues_exactly(mixer):
    def build():
        torch.manual_seed(0)
        model, ds, _ = make(mixer, steps=6, batch_size=4, grad_accum=2, feedback=False)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        fb = MixingFeedback(
            model,
            ds,
            total_steps=6,
            mixer=mixer,
            signals=SignalConfig(alignment_layers=1),
            agent=SMALL_AGENT,
            optimizer=opt,
        )
        return model, opt, ds, fb

    model, opt, ds, fb = build()
    straight = train(model, opt, ds, fb, 6)
    straight_weights = np.stack(ds.history)

    model, opt, ds, fb = build()
    first = train(model, opt, ds, fb, 3)
    buf = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "mixing": fb.state_dict()}, buf
    )
    model, opt, ds, fb = build()
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    fb.load_state_dict(saved["mixing"])
    # the weight-change features start from the saved snapshots (the model is where they were taken);
    # with one tracked matrix they are z-normalised to 0 in the state, so look at them directly
    np.testing.assert_array_equal(
        [float((p.detach() - s).norm()) for p, s in zip(fb.tracked.params, fb.tracked.snapshots)], 0
    )
    resumed = train(model, opt, ds, fb, 3)
    assert first + resumed == straight
    np.testing.assert_array_equal(np.stack(ds.history), straight_weights)
    assert len(np.unique(straight_weights.round(12), axis=0)) > 2  # the mixer really moved


def test_a_policy_for_other_domains_or_another_state_layout_is_refused(tmp_path):
    _, _, fb = make("uniform")
    run_spec = fb.state_spec
    torch.manual_seed(0)
    good = save_policy(tmp_path / "good", Actor(run_spec["dim"], 3, 8, 1), DOMAINS, run_spec, {})
    _, _, served = make(policy=good, mixer=None)
    assert served.mixer.name == "acodm" and served.current.sum() == pytest.approx(1)

    other = save_policy(
        tmp_path / "other", Actor(run_spec["dim"], 3, 8, 1), ["web", "code", "law"], run_spec, {}
    )
    with pytest.raises(
        PolicyMismatchError,
        match=r"trained on domains \['web', 'code', 'law'\], the corpus has "
        r"\['d0', 'd1', 'd2'\]",
    ):
        make(policy=other, mixer=None)
    deeper = dict(
        run_spec, tracked_params=["l.5.w", "l.3.w", "l.1.w"], num_tracked=3, dim=3 * 3 + 2 * 3 + 1
    )
    wide = save_policy(tmp_path / "wide", Actor(deeper["dim"], 3, 8, 1), DOMAINS, deeper, {})
    with pytest.raises(
        PolicyMismatchError,
        match=r"tracks \['l.5.w', 'l.3.w', 'l.1.w'\], this run's tracks "
        r"\['gpt_neox.layers.1.mlp.dense_4h_to_h.weight'\]",
    ):
        make(policy=wide, mixer=None)
    relaid = dict(
        run_spec,
        layout=["loss", "counts", "loss_change", "weight_norm", "weight_change_norm", "progress"],
    )
    shuffled = save_policy(
        tmp_path / "shuffled", Actor(run_spec["dim"], 3, 8, 1), DOMAINS, relaid, {}
    )
    with pytest.raises(
        PolicyMismatchError,
        match=r"laid out as \['loss', 'counts', .*this run's state is "
        r"\['loss', 'loss_change', 'counts'",
    ):
        make(policy=shuffled, mixer=None)


def test_misuse_is_refused_clearly():
    model, ds, fb = make("odm")
    with pytest.raises(RuntimeError, match="no per-example losses were recorded in step 1"):
        fb.step()
    batch = batch_of(iter(ds), 6)
    with pytest.raises(ValueError, match="no `domain` for this batch"):
        fb.loss(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    with pytest.raises(ValueError, match="unknown mixer 'odm2'"):
        make("odm2")
    model, ds, fb = make("alignment")
    batch = batch_of(iter(ds), 6)
    fb.loss(model(input_ids=batch["input_ids"]).logits, batch).backward()
    with pytest.raises(ValueError, match="alignment mixer steps by the learning rate"):
        fb.step()
    model, ds, _ = make(feedback=False)
    # the default "auto" without named targets is "total"; "eval" by name evaluates every domain
    assert SignalConfig().score == "auto"
    fb = MixingFeedback(model, ds, total_steps=4, mixer="odm", signals=SignalConfig())
    assert fb.sig.score == "total"
    fb = MixingFeedback(model, ds, total_steps=4, mixer="odm", signals=SignalConfig(score="eval"))
    assert fb.sig.score == "eval" and fb.reference is None  # ODM reads no scores: no reference
