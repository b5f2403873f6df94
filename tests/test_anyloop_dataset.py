"""MixingDataset: packed examples drawn by the published weights, the same stream whatever the
DataLoader workers, distinct streams per rank, exact resume, and clear refusals."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from acodm_ray.anyloop import EmptySourceError, MixingDataset, MixingStateError
from acodm_ray.sampler import WeightsError

SPAN = 100  # domain i's tokens are in [i * SPAN, (i + 1) * SPAN)


def sources(num_domains=3, length=5000, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"d{i}": rng.integers(i * SPAN, (i + 1) * SPAN, size=length).astype(np.int32)
        for i in range(num_domains)
    }


def take_steps(ds, schedule, batch_size, grad_accum, loader=None):
    """Draw `len(schedule)` optimizer steps of examples, publishing schedule[s] after step s (what a
    feedback does); returns the examples as (domain, first token) pairs."""
    it = iter(loader) if loader is not None else None
    gen = iter(ds) if loader is None else None
    out = []
    for w in schedule:
        for _ in range(grad_accum):
            if it is not None:
                batch = next(it)
                out += list(zip(batch["domain"].tolist(), batch["input_ids"][:, 0].tolist()))
            else:
                for _ in range(batch_size):
                    ex = next(gen)
                    out.append((ex["domain"], int(ex["input_ids"][0])))
        ds.publish(w)
    return out


SCHEDULE = [
    [0.6, 0.3, 0.1],
    [0.1, 0.3, 0.6],
    [0.34, 0.33, 0.33],
    [0.9, 0.05, 0.05],
    [0.2, 0.2, 0.6],
    [0.5, 0.5, 0.0],
]


def test_examples_are_packed_windows_of_the_domain_the_weights_choose():
    ds = MixingDataset(sources(), seq_len=16, weights=[0.7, 0.2, 0.1], seed=1)
    examples = [ex for ex, _ in zip(ds, range(3000))]
    for ex in examples[:200]:
        d = ex["domain"]
        assert ex["input_ids"].shape == (16,) and ex["input_ids"].dtype == torch.int64
        assert torch.equal(
            ex["labels"], ex["input_ids"]
        )  # HF causal LMs shift the labels themselves
        assert ((ex["input_ids"] >= d * SPAN) & (ex["input_ids"] < (d + 1) * SPAN)).all()
    share = np.bincount([ex["domain"] for ex in examples], minlength=3) / len(examples)
    np.testing.assert_allclose(share, [0.7, 0.2, 0.1], atol=0.03)


def test_a_domain_with_zero_weight_is_never_drawn():
    ds = MixingDataset(sources(), seq_len=8, weights=[0.5, 0.0, 0.5])
    assert 1 not in {ex["domain"] for ex, _ in zip(ds, range(500))}


def test_steps_draw_with_the_weights_published_delay_steps_before():
    ds = MixingDataset(sources(), seq_len=8, delay=1, batch_size=50, grad_accum=2)
    ds.attach([1.0, 0.0, 0.0])
    drawn = take_steps(ds, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], 50, 2)
    per_step = [sorted({d for d, _ in drawn[i * 100 : (i + 1) * 100]}) for i in range(3)]
    assert per_step == [
        [0],
        [0],
        [1],
    ]  # step s uses the decision after step s - 1 (the initial one first)


def test_state_dict_gives_the_identical_continuation():
    """Saved after 3 steps while the loader had already drawn 5 examples of step 3: a dataset that
    loads the state continues with exactly the examples the original goes on to train on."""
    import io

    B, GA = 4, 3

    def make(initial):
        ds = MixingDataset(sources(), seq_len=16, seed=7, batch_size=B, grad_accum=GA)
        ds.attach(initial)
        return ds

    def draw(gen, ds, schedule, ahead=()):
        out, pending = [], list(ahead)
        for w in schedule:
            for _ in range(B * GA):
                ex = pending.pop(0) if pending else next(gen)
                out.append((ex["domain"], ex["input_ids"].tolist()))
            ds.publish(w)
        return out

    original = make([0.2, 0.3, 0.5])
    gen = iter(original)
    draw(gen, original, SCHEDULE[:3])
    buf = io.BytesIO()
    torch.save(original.state_dict(), buf)
    ahead = [next(gen) for _ in range(5)]  # prefetched, not trained on yet
    expected = draw(gen, original, SCHEDULE[3:], ahead)

    restored = make([1.0, 0.0, 0.0])
    buf.seek(0)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert restored.steps_published == 3
    assert draw(iter(restored), restored, SCHEDULE[3:]) == expected
    fresh = make([0.2, 0.3, 0.5])  # without the state the stream starts over
    assert draw(iter(fresh), fresh, SCHEDULE[3:]) != expected


def test_dataloader_workers_split_one_stream_and_wait_for_each_steps_weights():
    """Two workers build different examples (w, w + W, ... of the loader's batches) and together the
    very stream one process draws, even while the weights change every step."""
    B, GA = 4, 3

    def run(num_workers):
        ds = MixingDataset(sources(), seq_len=16, seed=3, batch_size=B, grad_accum=GA, delay=1)
        ds.attach([0.2, 0.3, 0.5])
        loader = DataLoader(ds, batch_size=B, num_workers=num_workers)
        return take_steps(ds, SCHEDULE, B, GA, loader=loader)

    single, two = run(0), run(2)
    assert two == single
    batches = [tuple(single[i : i + B]) for i in range(0, len(single), B)]
    assert len(set(batches)) == len(
        batches
    )  # no batch drawn twice (a worker ignoring its id would repeat)


def test_ranks_draw_distinct_streams(monkeypatch):
    rank0 = MixingDataset(sources(), seq_len=16, rank=0, world_size=2)
    rank1 = MixingDataset(sources(), seq_len=16, rank=1, world_size=2)
    first = lambda ds: [(ex["domain"], int(ex["input_ids"][0])) for ex, _ in zip(ds, range(32))]  # noqa: E731
    assert first(rank0) != first(rank1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    from_env = MixingDataset(sources(), seq_len=16)
    assert (from_env.rank, from_env.world_size) == (1, 2)
    assert first(from_env) == first(rank1)
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, world_size = 2\)"):
        MixingDataset(sources(), seq_len=16, rank=2, world_size=2)


def test_hf_datasets_and_iterables_of_token_lists_are_sources():
    datasets = pytest.importorskip("datasets")
    docs = {"a": [[1, 2, 3, 4], [5, 6, 7]], "b": [[10, 11, 12, 13, 14]]}
    ds = MixingDataset(
        {"a": datasets.Dataset.from_dict({"input_ids": docs["a"]}), "b": iter(docs["b"])},
        seq_len=3,
        eos_id=0,
    )
    np.testing.assert_array_equal(
        ds.streams[0], [1, 2, 3, 4, 0, 5, 6, 7, 0]
    )  # packed, eos between documents
    np.testing.assert_array_equal(ds.streams[1], [10, 11, 12, 13, 14, 0])
    np.testing.assert_allclose(ds.natural_proportions(), [9 / 15, 6 / 15])


def test_bad_sources_are_refused_by_name():
    datasets = pytest.importorskip("datasets")
    with pytest.raises(EmptySourceError, match="domain 'empty' has no examples"):
        MixingDataset({"ok": np.arange(100), "empty": []}, seq_len=8)
    with pytest.raises(EmptySourceError, match="domain 'empty' has no examples"):
        MixingDataset({"ok": np.arange(100), "empty": np.zeros(0, np.int64)}, seq_len=8)
    with pytest.raises(
        EmptySourceError, match="domain 'short' has 5 tokens, fewer than one example of seq_len = 8"
    ):
        MixingDataset({"ok": np.arange(100), "short": np.arange(5)}, seq_len=8)
    text = datasets.Dataset.from_dict({"text": ["hello", "world"]})
    with pytest.raises(
        EmptySourceError, match=r"has columns \['text'\], none named 'input_ids': tokenize it first"
    ):
        MixingDataset({"ok": np.arange(100), "raw": text}, seq_len=8)
    with pytest.raises(TypeError, match="float64.*not integer token ids"):
        MixingDataset({"ok": np.linspace(0, 1, 100)}, seq_len=8)


@pytest.mark.parametrize(
    "weights, match",
    [
        ([0.5, 0.6, 0.1], "sum to 1.200000, not 1"),
        ([1.2, -0.1, -0.1], r"are negative for domain\(s\) \['d1', 'd2'\]"),
        ([0.5, 0.5], "have shape \\(2,\\) but there are 3 domains"),
        ([float("nan"), 0.5, 0.5], r"are not finite for domain\(s\) \['d0'\]"),
    ],
)
def test_weights_that_are_not_a_distribution_are_refused(weights, match):
    with pytest.raises(WeightsError, match="mixing weights refused: weights " + match):
        MixingDataset(sources(), seq_len=8, weights=weights)
    ds = MixingDataset(sources(), seq_len=8)
    with pytest.raises(WeightsError, match=match):
        ds.publish(weights)


def test_drawing_ahead_of_the_feedback_in_the_main_process_says_to_raise_delay():
    ds = MixingDataset(sources(), seq_len=8, delay=0, batch_size=2, grad_accum=1, wait_timeout_s=1)
    ds.attach([0.2, 0.3, 0.5])
    gen = iter(ds)
    next(gen), next(gen)  # step 0
    with pytest.raises(
        RuntimeError, match="step 1 needs the weights decided after step 1.*larger delay"
    ):
        next(gen)


def test_a_state_for_other_domains_or_another_seed_is_refused():
    state = MixingDataset(sources(), seq_len=8, seed=0).state_dict()
    other = MixingDataset(sources(num_domains=2), seq_len=8)
    with pytest.raises(
        MixingStateError, match=r"for domains \['d0', 'd1', 'd2'\], this dataset has \['d0', 'd1'\]"
    ):
        other.load_state_dict(state)
    with pytest.raises(MixingStateError, match="seed = 0, this dataset 5"):
        MixingDataset(sources(), seq_len=8, seed=5).load_state_dict(state)
