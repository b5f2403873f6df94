"""The shared training step: signals, evaluation, NaN handling, exact resume."""

import numpy as np
import pytest
import torch

from acodm_ray.signals import state_dim
from acodm_ray.train_step import LMTrainer, load_checkpoint, save_checkpoint, warmup_cosine


def test_step_returns_spec_signals(cfg, corpus):
    trainer = LMTrainer(cfg, corpus, device="cpu")
    s = trainer.step(np.array([0.2, 0.3, 0.5]))
    K, L = 3, len(trainer.state_params)
    assert L == 1  # 2 layers: every other layer from the top
    assert s.state.shape == (state_dim(K, L),)
    assert s.state[-1] == pytest.approx(cfg.signals.progress_scale * 1 / cfg.train.steps)
    assert np.all(np.abs(s.state[:-1]) <= 3.0)
    assert s.counts.sum() == cfg.train.grad_accum * cfg.train.micro_batch_size
    sampled = s.counts > 0
    assert np.all(np.isfinite(s.losses[sampled])) and np.all(np.isnan(s.losses[~sampled]))
    assert s.tokens == cfg.train.grad_accum * cfg.train.micro_batch_size * cfg.train.seq_len
    assert np.isfinite(s.loss) and s.finite and s.step == 1


def test_loss_goes_down(cfg, corpus):
    trainer = LMTrainer(cfg, corpus, device="cpu")
    first = trainer.step(np.full(3, 1 / 3)).loss
    for _ in range(7):
        last = trainer.step(np.full(3, 1 / 3)).loss
    assert last < first


def test_evaluate_reports_per_domain_perplexity(cfg, corpus):
    trainer = LMTrainer(cfg, corpus, device="cpu")
    ppl = trainer.evaluate()
    assert set(ppl) == {"d0", "d1", "d2", "average"}
    assert ppl["average"] == pytest.approx(np.mean([ppl[d] for d in ("d0", "d1", "d2")]))
    # an untrained model is close to uniform over the vocabulary
    assert all(10 < ppl[d] < 300 for d in ("d0", "d1", "d2"))


def test_resume_continues_exactly(cfg, corpus, tmp_path):
    w = np.array([0.5, 0.25, 0.25])
    straight = LMTrainer(cfg, corpus, device="cpu")
    for _ in range(3):
        straight.step(w)
    save_checkpoint(tmp_path / "ck.pt", straight.state_dict())
    expected = [straight.step(w) for _ in range(3)]

    resumed = LMTrainer(
        cfg, corpus, seed=123, device="cpu"
    )  # different init: the checkpoint must win
    resumed.load_state_dict(load_checkpoint(tmp_path / "ck.pt"))
    got = [resumed.step(w) for _ in range(3)]
    for e, g in zip(expected, got):
        assert e.loss == g.loss
        np.testing.assert_array_equal(e.state, g.state)
        np.testing.assert_array_equal(e.counts, g.counts)


def test_nan_loss_skips_the_update(cfg, corpus):
    trainer = LMTrainer(cfg, corpus, device="cpu")
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.fill_(float("nan"))
    head_before = trainer.model.get_output_embeddings().weight.clone()
    s = trainer.step(np.full(3, 1 / 3))
    assert not s.finite and np.isnan(s.loss)
    assert torch.equal(trainer.model.get_output_embeddings().weight, head_before)
    assert len(trainer.optimizer.state) == 0  # AdamW never stepped
    assert np.all(s.scores == 0)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(bad)


def test_checkpoint_for_other_domains_is_refused(cfg, corpus, tmp_path):
    from tests.conftest import synthetic_corpus

    trainer = LMTrainer(cfg, corpus, device="cpu")
    other = synthetic_corpus(num_domains=4)
    other_trainer = LMTrainer(cfg, other, device="cpu")
    with pytest.raises(ValueError, match="trained on domains"):
        other_trainer.load_state_dict(trainer.state_dict())


def test_validation_shorter_than_a_sequence_is_refused(cfg, corpus):
    corpus.validation["d1"] = corpus.validation["d1"][:5]
    with pytest.raises(ValueError, match="validation split of domain 'd1' has 5 tokens"):
        LMTrainer(cfg, corpus, device="cpu")


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 10, 100, 1.0, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(100, 10, 100, 1.0, 0.1) == pytest.approx(0.1)


def test_bare_loop_does_the_same_computation_as_the_step(cfg, corpus):
    """benchmarks/bench_train_step.py's `bare` loop is the upper bound of `LMTrainer.step` only if
    it computes the same update: fed the step's batches, it must end with the same parameters."""
    from benchmarks.bench_train_step import BareLoop

    w = np.array([0.2, 0.3, 0.5])
    trainer = LMTrainer(cfg, corpus, compute_signals=False, device="cpu")
    bare = BareLoop(cfg, corpus)
    init = [p.detach().clone() for p in trainer.model.parameters()]
    for p, q in zip(init, bare.model.parameters()):
        assert torch.equal(p, q)
    batches, draw = [], trainer.sampler.batch
    trainer.sampler.batch = lambda d: batches.append(draw(d)) or batches[-1]
    replay = iter(batches)
    bare.sample = lambda weights: next(replay)
    steps = 5  # 2 warm-up steps, then the cosine
    for _ in range(steps):
        trainer.step(w)
    for _ in range(steps):
        bare.step(w)
    assert next(replay, None) is None and len(batches) == steps * cfg.train.grad_accum
    moved = max(
        float((p.detach() - p0).abs().max()) for p, p0 in zip(trainer.model.parameters(), init)
    )
    assert moved > 1e-3  # the comparison below is far from vacuous
    gap, name = max(
        (float((q.detach() - p.detach()).abs().max()), name)
        for (name, p), q in zip(trainer.model.named_parameters(), bare.model.parameters())
    )
    assert gap <= 1e-6, (
        f"the bare loop's {name} differs from the step's by {gap:.3g}"
    )  # bitwise equal today
