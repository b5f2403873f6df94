"""The prepared corpus's pieces that need no Ray: TokenStream over shard files, the ShardWriter and
its resume, the router's split rule and caps (against hand-computed values), the manifest."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from acodm_ray.data.manifest import (
    DomainStats,
    Manifest,
    PreparedCorpusError,
    ShardInfo,
    check_sizes,
    domain_dir,
    token_dtype,
    verify_checksums,
)
from acodm_ray.data.router import DocRouter, validation_mask
from acodm_ray.data.shard_writer import ShardWriter
from acodm_ray.data.token_stream import TokenStream
from acodm_ray.sampler import MixtureSampler


def write_stream(
    tmp_path, tokens: np.ndarray, shard_tokens: int, doc_lengths=None
) -> list[ShardInfo]:
    writer = ShardWriter(tmp_path, "uint16", shard_tokens)
    lengths = np.array([tokens.size]) if doc_lengths is None else np.asarray(doc_lengths)
    ends = np.cumsum(lengths)
    for a, b in zip(np.concatenate([[0], ends[:-1]]), ends):  # one document per append
        writer.append("train", "d", tokens[a:b], [b - a])
    return writer.finish()


def stream_of(tmp_path, shards: list[ShardInfo]) -> TokenStream:
    return TokenStream([tmp_path / s.file for s in shards], [s.tokens for s in shards], "uint16")


# ------------------------------------------------------------------------------- TokenStream


def test_windows_and_slices_across_shard_boundaries_read_the_whole_stream(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 60_000, size=1000).astype(np.uint16)
    stream = stream_of(tmp_path, write_stream(tmp_path, tokens, shard_tokens=64))
    assert len(stream) == 1000 and stream.num_shards == 16  # 15 full shards and a short one
    starts = rng.integers(0, 1000 - 33, size=500)
    expected = np.stack([tokens[s : s + 33] for s in starts]).astype(np.int64)
    assert np.array_equal(stream.windows(starts, 33), expected)
    assert np.array_equal(stream.windows([60], 10)[0], tokens[60:70])  # straddles 64
    assert np.array_equal(stream[30:200], tokens[30:200]) and np.array_equal(stream[:], tokens)
    with pytest.raises(IndexError, match="past the stream"):
        stream.windows([995], 10)
    with pytest.raises(TypeError, match="not turned into one array"):
        np.asarray(stream)


def test_stream_pickles_as_its_file_list(tmp_path):
    tokens = np.arange(300, dtype=np.uint16)
    stream = stream_of(tmp_path, write_stream(tmp_path, tokens, shard_tokens=100))
    stream.windows([5, 150, 250], 20)  # opens the maps
    blob = pickle.dumps(stream)
    assert len(blob) < 2_000  # the paths, not 600 bytes of tokens per shard
    assert np.array_equal(pickle.loads(blob)[95:105], tokens[95:105])


def test_sampler_draws_the_same_windows_from_shards_as_from_one_array(tmp_path):
    """The sampler's draws depend on the stream's length and content only: cutting it into shards
    changes nothing (the committed benchmark tables rest on this)."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 500, size=5000).astype(np.uint16)
    stream = stream_of(tmp_path, write_stream(tmp_path, tokens, shard_tokens=257))
    flat = MixtureSampler(
        {"d": tokens.astype(np.int32)}, ["d"], seq_len=16, micro_batch_size=8, seed=3
    )
    sharded = MixtureSampler({"d": stream}, ["d"], seq_len=16, micro_batch_size=8, seed=3)
    for _ in range(50):
        assert np.array_equal(flat.batch(0).numpy(), sharded.batch(0).numpy())
    ref_flat, _ = flat.reference_batch([0])
    ref_sharded, _ = sharded.reference_batch([0])
    assert np.array_equal(ref_flat.numpy(), ref_sharded.numpy())


# ------------------------------------------------------------------------------- ShardWriter


def test_writer_cuts_fixed_size_shards_and_counts_documents(tmp_path):
    tokens = np.arange(25, dtype=np.uint16)
    shards = write_stream(tmp_path, tokens, shard_tokens=10, doc_lengths=[4, 9, 2, 10])
    # documents end at 4, 13, 15, 25: shard [0,10) holds one end, [10,20) two, [20,25) one
    assert [(s.tokens, s.documents) for s in shards] == [(10, 1), (10, 2), (5, 1)]
    at_once = ShardWriter(tmp_path / "at_once", "uint16", 10)  # the same documents in one append
    at_once.append("train", "d", tokens, [4, 9, 2, 10])
    assert [(s.tokens, s.documents) for s in at_once.finish()] == [(10, 1), (10, 2), (5, 1)]
    assert [s.file for s in shards] == [f"train/{domain_dir('d')}/0000{i}.bin" for i in range(3)]
    assert np.array_equal(np.fromfile(tmp_path / shards[1].file, dtype=np.uint16), tokens[10:20])


def test_writer_restore_cuts_the_open_shard_back_to_its_checkpoint(tmp_path):
    """What was written after the last checkpoint is dropped and written again: same bytes."""
    a, b = np.arange(15, dtype=np.uint16), np.arange(100, 130, dtype=np.uint16)
    straight = ShardWriter(tmp_path / "straight", "uint16", 20)
    straight.append("train", "d", a, [15])
    straight.append("train", "d", b, [30])
    expected = straight.finish()

    crashed = ShardWriter(tmp_path / "resumed", "uint16", 20)
    crashed.append("train", "d", a, [15])
    crashed.flush()
    state = crashed.state()
    crashed.append("train", "d", b[:7], [7])  # written after the checkpoint, then a crash
    crashed.abandon()
    resumed = ShardWriter(tmp_path / "resumed", "uint16", 20)
    resumed.restore(state)
    resumed.append("train", "d", b, [30])
    got = resumed.finish()
    assert got == expected
    for s in got:
        assert (tmp_path / "resumed" / s.file).read_bytes() == (
            tmp_path / "straight" / s.file
        ).read_bytes()

    # what the crash wrote is longer than what follows the resume: it must be cut, not overwritten
    short = ShardWriter(tmp_path / "short", "uint16", 20)
    short.append("train", "d", a, [15])
    short.flush()
    state = short.state()
    short.append("train", "d", np.full(4, 999, dtype=np.uint16), [4])
    short.abandon()
    again = ShardWriter(tmp_path / "short", "uint16", 20)
    again.restore(state)
    again.append("train", "d", b[:1], [1])
    (shard,) = again.finish()
    assert np.fromfile(tmp_path / "short" / shard.file, dtype=np.uint16).tolist() == [
        *a.tolist(),
        int(b[0]),
    ]


def test_domain_dirs_are_safe_and_distinct():
    names = ["Pile-CC", "DM Mathematics", "a/b", "A/B", "ünïcode", ""]
    dirs = [domain_dir(n) for n in names]
    assert len(set(dirs)) == len(names)
    assert all("/" not in d and " " not in d for d in dirs)


def test_token_dtype():
    assert token_dtype(65_536) == "uint16" and token_dtype(65_537) == "uint32"


# ------------------------------------------------------------------------------- DocRouter


def test_split_rule_by_hand():
    # f = 0.1: validation documents are 0, 10, 20, ... (ceil((i+1)/10) > ceil(i/10))
    assert np.flatnonzero(validation_mask(0, 25, 0.1)).tolist() == [0, 10, 20]
    # f = 0.25 from document 3 on: documents 4 and 8 (ceil((i+1)/4) > ceil(i/4) at i = 4, 8)
    assert (np.flatnonzero(validation_mask(3, 7, 0.25)) + 3).tolist() == [4, 8]
    # f = 0.05 over 20 documents: exactly one
    assert validation_mask(0, 20, 0.05).sum() == 1


def test_router_streams_the_same_split_however_the_documents_arrive():
    whole = DocRouter(0.2)
    is_val, keep = whole.route("d", None, np.ones(12))
    pieces = DocRouter(0.2)
    parts = [pieces.route("d", None, np.ones(n))[0] for n in (5, 1, 6)]
    assert np.array_equal(np.concatenate(parts), is_val) and keep.all()
    assert np.flatnonzero(is_val).tolist() == [0, 5, 10]


def test_router_caps_documents_and_tokens_by_hand():
    router = DocRouter(0.5, max_docs=2)
    _, keep = router.route("d", "train", np.array([5, 5, 5, 5]))
    assert keep.tolist() == [True, True, False, False]
    router = DocRouter(0.5, max_tokens=12)
    _, keep = router.route("d", "train", np.array([5, 5, 5]))  # 0 and 5 are below 12; 10 too
    assert keep.tolist() == [True, True, True]
    _, keep = router.route("d", "train", np.array([1]))  # holds 15 >= 12: full
    assert keep.tolist() == [False]
    assert router.full(["d"], ("train",)) and not router.full(["d", "e"], ("train",))
    assert not DocRouter(0.5).full(["d"])  # no caps: a source is read to its end
    state = router.state_dict()
    again = DocRouter(0.5, max_tokens=12)
    again.load_state_dict(state)
    assert again.tokens["train"]["d"] == 15 and again.full(["d"], ("train",))


# ------------------------------------------------------------------------------- manifest


def test_manifest_roundtrip_sizes_and_checksums(tmp_path):
    shards = write_stream(tmp_path, np.arange(50, dtype=np.uint16), shard_tokens=20)
    manifest = Manifest(
        ["d"], 512, 0, "uint16", 20, "abc", {"spec": {}}, shards,
        {"train": {"d": DomainStats(50, 1, 100)}, "validation": {}},
    )  # fmt: skip
    again = Manifest.from_json(manifest.to_json(), "m.json")
    assert again == manifest
    check_sizes(tmp_path, manifest)
    verify_checksums(tmp_path, manifest)
    path = tmp_path / shards[1].file
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PreparedCorpusError, match=f"{shards[1].file}.*fails its checksum"):
        verify_checksums(tmp_path, manifest)
    path.write_bytes(bytes(data[:-2]))
    with pytest.raises(PreparedCorpusError, match="truncated or corrupt"):
        check_sizes(tmp_path, manifest)
    (tmp_path / shards[0].file).unlink()
    with pytest.raises(PreparedCorpusError, match="missing"):
        check_sizes(tmp_path, manifest)
    with pytest.raises(PreparedCorpusError, match="not a prepared corpus"):
        Manifest.from_json('{"kind": "other"}', "m.json")
    with pytest.raises(PreparedCorpusError, match="format 99"):
        Manifest.from_json(manifest.to_json().replace('"format": 1', '"format": 99'), "m.json")


def test_full_domains_are_those_no_document_can_enter():
    router = DocRouter(0.5, max_docs=1)
    router.route("a", None, np.ones(4))  # a: train and validation both hold one document
    router.route("b", None, np.ones(1))  # b: document 0 went to validation; train is open
    assert router.full_domains() == ["a"]
    assert router.full_domains(("validation",)) == ["a", "b"]
    assert DocRouter(0.5).full_domains() == []  # no caps: nothing is ever full
