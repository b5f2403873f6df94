"""`acodm corpus prepare` end to end on small corpora (Ray Data on the session's 2-CPU Ray): every
source, the split rule and caps by hand, the shipped slice's streams against the documents encoded
one by one, an interrupted prepare resumed to the same bytes, and every bad input refused by name."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from acodm_ray.config import ConfigError, load_config
from acodm_ray.data import prepare as prepare_module
from acodm_ray.data.build import TINY_DIR
from acodm_ray.data.corpus_errors import (
    CorpusError,
    CorpusFileNotFoundError,
    CorpusNotBuiltError,
    DuplicateDomainError,
    EmptyDomainError,
    MissingColumnError,
    UnknownDomainError,
    UnknownSourceError,
)
from acodm_ray.data.load import load_tokenized, open_prepared
from acodm_ray.data.manifest import PreparedCorpusError, read_manifest
from acodm_ray.data.prepared import ensure_prepared
from acodm_ray.data.sources import plan_source
from acodm_ray.data.tokenizer import EOS, tokenizer_hash, train_bpe, wrap
from acodm_ray.sampler import MixtureSampler

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, out="prepared", **corpus):
    """An experiment config whose corpus is `corpus`, prepared into tmp_path/out (small shards)."""
    overrides = [f"corpus.{k}={json.dumps(v)}" for k, v in corpus.items()]
    overrides += [
        f"corpus.prepared={tmp_path / out}",
        "tokenizer.vocab_size=300",
        "prepare.shard_tokens=500",
    ]
    return load_config(None, overrides)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def pile_rows(domains: dict[str, int], start: int = 0) -> list[dict]:
    """Rows shaped like The Pile's (domain in a nested field), every text distinct."""
    return [
        {"text": f"{d} document {i} " + "words of text " * 4, "meta": {"pile_set_name": d}}
        for d, n in domains.items()
        for i in range(start, start + n)
    ]


def documents(tokens, tokenizer, split: str, domain: str) -> list[str]:
    """The documents of a prepared stream, decoded (eos separates them)."""
    stream = getattr(tokens, split)[domain]
    ids = stream[0 : len(stream)]
    eos = tokenizer.convert_tokens_to_ids(EOS)
    cuts = np.flatnonzero(ids == eos)
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [tokenizer.decode(ids[a:b].tolist()) for a, b in zip(starts, cuts)]


# ------------------------------------------------------------------------------- the shipped slice


def tiny_documents() -> dict[str, dict[str, list[str]]]:
    """The shipped slice read by hand: split -> domain -> documents, in file order."""
    out: dict[str, dict[str, list[str]]] = {}
    for split in ("train", "validation"):
        with gzip.open(TINY_DIR / f"{split}.jsonl.gz", "rt") as f:
            for line in f:
                row = json.loads(line)
                out.setdefault(split, {}).setdefault(row["domain"], []).append(row["text"])
    return out


def test_tiny_streams_are_its_documents_encoded_and_joined_by_eos(ray_session, tmp_path):
    """The tokenizer is a BPE trained on each domain's first characters; every stream is its
    documents encoded one by one, each followed by eos; the sampler draws the same windows from
    the shards (cut every 500 tokens here) as from those streams held in memory."""
    cfg = config(tmp_path, source="tiny")
    cfg.tokenizer.train_max_chars_per_domain = 20_000  # below every domain's size: the cut matters
    tokens, tokenizer = load_tokenized(cfg)
    docs = tiny_documents()
    manifest = json.loads((TINY_DIR / "manifest.json").read_text())
    assert tokens.domains == [d for d in manifest["domains"]]
    budget = cfg.tokenizer.train_max_chars_per_domain
    texts = []
    for d in tokens.domains:  # tokenizer_pass.training_texts, written out
        left = budget
        for doc in docs["train"][d]:
            if left <= 0:
                break
            texts.append(doc[:left])
            left -= len(doc)
    assert tokenizer_hash(tokenizer) == tokenizer_hash(wrap(train_bpe(iter(texts), 300)))
    eos = tokenizer.eos_token_id
    reference = {}
    for split in ("train", "validation"):
        for d in tokens.domains:
            ids = [
                i
                for doc in docs[split][d]
                for i in [*tokenizer(doc, add_special_tokens=False)["input_ids"], eos]
            ]
            stream = getattr(tokens, split)[d]
            assert stream[0 : len(stream)].tolist() == ids, (split, d)
            reference.setdefault(split, {})[d] = np.array(ids, dtype=np.int32)
    assert max(tokens.train[d].num_shards for d in tokens.domains) > 10
    flat = MixtureSampler(reference["train"], tokens.domains, 32, 4, seed=5)
    sharded = MixtureSampler(tokens.train, tokens.domains, 32, 4, seed=5)
    for step in range(20):
        k = step % len(tokens.domains)
        assert np.array_equal(flat.batch(k).numpy(), sharded.batch(k).numpy())


# ------------------------------------------------------------------------------- sources


def test_column_mode_nested_column_split_by_document(ray_session, tmp_path):
    """No validation split: a domain's documents 0, 10, 20, ... are validation (f = 0.1)."""
    train = write_jsonl(tmp_path / "train.jsonl", pile_rows({"Pile-CC": 20, "FreeLaw": 10}))
    cfg = config(tmp_path, source="json", data_files={"train": [train]},
                 domain_column="meta.pile_set_name", validation_fraction=0.1)  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    assert tokens.domains == ["FreeLaw", "Pile-CC"]  # sorted
    val = [doc.split(" words")[0] for doc in documents(tokens, tok, "validation", "Pile-CC")]
    assert val == ["Pile-CC document 0", "Pile-CC document 10"]
    assert len(documents(tokens, tok, "train", "Pile-CC")) == 18
    assert len(documents(tokens, tok, "validation", "FreeLaw")) == 1
    stats = read_manifest(tmp_path / "prepared").stats
    assert (stats["train"]["FreeLaw"].documents, stats["validation"]["FreeLaw"].documents) == (9, 1)


def test_validation_file_parquet_csv_and_file_mode(ray_session, tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    t = write_jsonl(tmp_path / "t.jsonl", pile_rows({"a": 3, "b": 3}))
    v = write_jsonl(tmp_path / "v.jsonl", pile_rows({"a": 1, "b": 2}, start=50))
    cfg = config(tmp_path, "p1", source="json", domain_column="meta.pile_set_name",
                 data_files={"train": [t], "validation": [v]})  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    assert [len(documents(tokens, tok, "validation", d)) for d in ("a", "b")] == [1, 2]
    assert [len(documents(tokens, tok, "train", d)) for d in ("a", "b")] == [3, 3]

    rows = {"content": [f"text number {i} " * 3 for i in range(12)], "source": ["x", "y", "z"] * 4}
    pq.write_table(pa.table(rows), tmp_path / "data.parquet")
    pacsv.write_csv(pa.table(rows), tmp_path / "data.csv")
    for source, name in (("parquet", "data.parquet"), ("csv", "data.csv")):
        cfg = config(tmp_path, f"p-{source}", source=source, data_files={"train": [str(tmp_path / name)]},
                     text_column="content", domain_column="source", validation_fraction=0.25)  # fmt: skip
        tokens, tok = load_tokenized(cfg)
        assert tokens.domains == ["x", "y", "z"]
        assert [len(documents(tokens, tok, "train", d)) for d in "xyz"] == [3, 3, 3], source

    for i in range(4):
        (tmp_path / f"law{i}.txt").write_text(f"Section {i}.\nThe party of the first part.\n")
    code = write_jsonl(tmp_path / "code.jsonl", [{"text": f"def f{i}(): pass"} for i in range(10)])
    cfg = config(tmp_path, "p-text", source="text", domain_files={"law": [str(tmp_path / "law*.txt")]},
                 validation_fraction=0.25)  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    law = documents(tokens, tok, "train", "law")
    assert len(law) == 3 and all(doc.count("\n") == 2 for doc in law)  # one file = one document
    cfg = config(tmp_path, "p-files", source="json", domain_files={"code": [code], "more": [str(tmp_path / "t.jsonl")]},
                 validation_fraction=0.2)  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    assert tokens.domains == ["code", "more"]  # the order of domain_files
    assert len(documents(tokens, tok, "validation", "code")) == 2


def test_domain_list_and_caps(ray_session, tmp_path):
    rows = pile_rows({"a": 30, "b": 30, "c": 30})
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = config(tmp_path, "caps-docs", source="json", data_files={"train": [train]},
                 domain_column="meta.pile_set_name", domains=["c", "a"], max_docs_per_domain=4)  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    assert tokens.domains == ["c", "a"]
    assert len(documents(tokens, tok, "train", "c")) == 4
    assert len(documents(tokens, tok, "validation", "c")) == 2  # documents 0 and 20 (f = 0.05)
    cfg = config(tmp_path, "caps-tokens", source="json", data_files={"train": [train]},
                 domain_column="meta.pile_set_name", max_tokens_per_domain=100)  # fmt: skip
    tokens, _ = load_tokenized(cfg)
    per_doc = (
        len(tokens.train["a"])
        / read_manifest(tmp_path / "caps-tokens").stats["train"]["a"].documents
    )
    assert (
        100 <= len(tokens.train["a"]) < 100 + per_doc + 1
    )  # whole documents, the last crosses the cap


def test_hub_source_streams_local_files(ray_session, tmp_path, monkeypatch):
    """`source: hub` reads through `datasets` in streaming mode: here the "json" builder over local
    files (no network), split by the router (the dataset has no validation split), capped."""
    files = [
        write_jsonl(tmp_path / f"part{i}.jsonl", pile_rows({"Github": 10, "FreeLaw": 10}, 10 * i))
        for i in range(3)
    ]
    cfg = config(tmp_path, "hub", source="hub", path="json", data_files={"train": files},
                 domain_column="meta.pile_set_name", domains=["Github", "FreeLaw"], max_docs_per_domain=5)  # fmt: skip
    tokens, tok = load_tokenized(cfg)
    assert tokens.domains == ["Github", "FreeLaw"]
    got = [doc.split(" words")[0] for doc in documents(tokens, tok, "train", "Github")]
    assert got == [f"Github document {i}" for i in (1, 2, 3, 4, 5)]  # document 0 is validation
    with pytest.raises(CorpusError, match="corpus.path"):
        plan_source(config(tmp_path, source="hub").corpus)


# ------------------------------------------------------------------------------- resume and faults


def run_prepare(
    cfg_path: Path, out: Path, home: Path, faults: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACODM_HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    if faults:
        env["ACODM_PREPARE_FAULTS"] = json.dumps(faults)
    cmd = [
        sys.executable,
        "-m",
        "acodm_ray.cli",
        "corpus",
        "prepare",
        "--config",
        str(cfg_path),
        "--out",
        str(out),
    ]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}  # fmt: skip


@pytest.mark.slow
def test_killed_prepare_continues_to_the_same_bytes(tmp_path):
    """Killed (SIGKILL) after its second input file, a prepare reruns from its journal and ends
    with the manifest and shards of a prepare that ran straight through."""
    files = [
        write_jsonl(tmp_path / f"part{i}.jsonl", pile_rows({"a": 8, "b": 5}, 8 * i))
        for i in range(5)
    ]
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(json.dumps({
        "corpus": {"source": "json", "data_files": {"train": files}, "domain_column": "meta.pile_set_name",
                   "validation_fraction": 0.2},
        "tokenizer": {"vocab_size": 300}, "prepare": {"shard_tokens": 300, "workers": 1},
    }))  # fmt: skip
    straight = run_prepare(cfg_path, tmp_path / "straight", tmp_path / "home")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run_prepare(
        cfg_path, tmp_path / "resumed", tmp_path / "home", {"kill_after_inputs": 2}
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    journal = json.loads((tmp_path / "resumed" / "progress.json").read_text())
    assert journal["inputs_done"] == 2 and not (tmp_path / "resumed" / "manifest.json").exists()
    with pytest.raises(PreparedCorpusError, match="interrupted"):
        read_manifest(tmp_path / "resumed")
    resumed = run_prepare(cfg_path, tmp_path / "resumed", tmp_path / "home")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing an interrupted prepare after 2 input(s)" in resumed.stderr
    assert tree_bytes(tmp_path / "resumed") == tree_bytes(tmp_path / "straight")


def test_bad_input_is_refused_by_name(ray_session, tmp_path, monkeypatch):
    rows = pile_rows({"a": 4, "b": 4})
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(ConfigError, match="corpus.source.*bundled.*'pile'"):
        config(tmp_path, source="pile")  # refused as the config loads
    cfg = config(tmp_path, source="tiny")
    cfg.corpus.source = "pile"  # a config built in code reaches the plan
    with pytest.raises(UnknownSourceError, match="'pile'.*bundled"):
        plan_source(cfg.corpus)
    with pytest.raises(CorpusFileNotFoundError, match="nope.jsonl"):
        plan_source(
            config(
                tmp_path, source="json", data_files={"train": [str(tmp_path / "nope.jsonl")]}
            ).corpus
        )
    with pytest.raises(CorpusFileNotFoundError, match=r"nope\*.txt"):
        plan_source(
            config(
                tmp_path, source="text", domain_files={"a": [str(tmp_path / "nope*.txt")]}
            ).corpus
        )
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(CorpusNotBuiltError, match="acodm corpus build"):
        plan_source(config(tmp_path, source="bundled").corpus)
    with pytest.raises(DuplicateDomainError, match="Law"):
        plan_source(
            config(tmp_path, source="json", domain_files={"law": [train], "Law ": [train]}).corpus
        )
    with pytest.raises(UnknownDomainError, match="'?zz'?.*available domains: python_code"):
        plan_source(config(tmp_path, source="tiny", domains=["python_code", "zz"]).corpus)
    with pytest.raises(CorpusError, match="data_files.*domain_files"):
        plan_source(config(tmp_path, source="json").corpus)
    with pytest.raises(CorpusError, match="'test'"):
        plan_source(
            config(tmp_path, source="json", data_files={"train": [train], "test": [train]}).corpus
        )

    # a missing column is found before any worker starts (Ray Data never runs)
    monkeypatch.setattr(prepare_module, "ray_for_prepare", lambda: pytest.fail("a worker started"))
    with pytest.raises(
        MissingColumnError, match="'meta.set'.*available columns: text, meta, meta.pile_set_name"
    ):
        ensure_prepared(
            config(
                tmp_path,
                "m1",
                source="json",
                data_files={"train": [train]},
                domain_column="meta.set",
            )
        )
    with pytest.raises(MissingColumnError, match="'body'.*text"):
        ensure_prepared(config(tmp_path, "m2", source="json", data_files={"train": [train]}, text_column="body",
                               domain_column="meta.pile_set_name"))  # fmt: skip


def test_empty_domains_and_documentless_sources(ray_session, tmp_path):
    blank = write_jsonl(
        tmp_path / "t.jsonl",
        pile_rows({"a": 4}) + [{"text": "  ", "meta": {"pile_set_name": "blank"}}],
    )
    val = write_jsonl(tmp_path / "v.jsonl", pile_rows({"a": 1}, start=9))
    base = {"source": "json", "domain_column": "meta.pile_set_name"}
    with pytest.raises(UnknownDomainError, match="blank.*no documents.*values are: a"):
        ensure_prepared(config(tmp_path, "e1", **base, data_files={"train": [blank], "validation": [val]},
                               domains=["a", "blank"]))  # fmt: skip
    two = write_jsonl(tmp_path / "t2.jsonl", pile_rows({"a": 4, "b": 4}))
    with pytest.raises(EmptyDomainError, match="'b'.*validation"):
        ensure_prepared(
            config(tmp_path, "e2", **base, data_files={"train": [two], "validation": [val]})
        )
    assert list((tmp_path / "e2").glob("train/*/*.bin"))  # a failed prepare deletes nothing it made
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "only one"}])
    with pytest.raises(EmptyDomainError, match="'solo'.*1 document"):
        ensure_prepared(config(tmp_path, "e3", source="json", domain_files={"solo": [one]}))
    nothing = write_jsonl(tmp_path / "none.jsonl", [{"text": " ", "meta": {"pile_set_name": "a"}}])
    with pytest.raises(CorpusError, match="no documents"):
        ensure_prepared(config(tmp_path, "e4", **base, data_files={"train": [nothing]}))


def test_a_prepared_directory_of_another_corpus_is_refused(ray_session, tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", pile_rows({"a": 6, "b": 6}))
    corpus = {
        "source": "json",
        "data_files": {"train": [train]},
        "domain_column": "meta.pile_set_name",
    }
    cfg = config(tmp_path, **corpus)
    location = ensure_prepared(cfg)
    open_prepared(cfg, location)  # the same config opens it
    other_tok = load_config(None, [f"corpus.{k}={json.dumps(v)}" for k, v in corpus.items()]
                            + [f"corpus.prepared={location}", "tokenizer.vocab_size=400"])  # fmt: skip
    with pytest.raises(
        PreparedCorpusError, match="tokenizer.*'vocab_size': 300.*'vocab_size': 400"
    ):
        open_prepared(other_tok, location)
    other_src = config(tmp_path, **{**corpus, "domain_column": "meta.other"})
    with pytest.raises(
        PreparedCorpusError,
        match="corpus.domain_column: prepared 'meta.pile_set_name', this config 'meta.other'",
    ):
        open_prepared(other_src, location)
    other_domains = config(tmp_path, **{**corpus, "domains": ["b", "a"]})
    with pytest.raises(PreparedCorpusError, match=r"corpus"):
        open_prepared(other_domains, location)
    # a prepare into a directory that holds another corpus's interrupted work refuses, naming both
    (Path(location) / "manifest.json").unlink()
    (Path(location) / "progress.json").write_text(
        json.dumps({"key": {"plan": "other"}, "inputs_done": 1})
    )
    with pytest.raises(PreparedCorpusError, match="interrupted prepare of another corpus"):
        ensure_prepared(cfg)


def test_verify_names_a_corrupt_shard(ray_session, tmp_path):
    cfg = config(tmp_path, source="tiny")
    location = ensure_prepared(cfg)
    manifest = read_manifest(Path(location))
    shard = Path(location) / manifest.shards[3].file
    data = bytearray(shard.read_bytes())
    data[10] ^= 0x01
    shard.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "acodm_ray.cli", "corpus", "verify", location],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert (
        proc.returncode == 2
        and manifest.shards[3].file in proc.stderr
        and "checksum" in proc.stderr
    )
    shard.write_bytes(bytes(data[:-4]))
    with pytest.raises(PreparedCorpusError, match="truncated"):
        load_tokenized(cfg)


def test_driver_threads_prepare_once_and_all_open_it(ray_session, tmp_path, monkeypatch):
    """jobs/compare.py asks for the corpus from several driver threads at once: one prepares, the
    others wait for it (a lock per process, a file lock across processes) and open the result."""
    import threading

    calls = []
    real = prepare_module.prepare_into

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "prepare_into", counted)
    cfg = config(tmp_path, source="tiny")
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(load_tokenized(cfg)[0].domains))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 3 and len({tuple(r) for r in results}) == 1
    assert calls == [1]


@pytest.fixture
def s3_uri(monkeypatch, tmp_path):
    """An S3 endpoint on loopback (moto's server), and a URI of a prefix in a fresh bucket there."""
    import socket

    moto_server = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    yield f"s3://corpora/tiny?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
    server.stop()


def test_a_prepared_corpus_on_object_storage(ray_session, tmp_path, monkeypatch, s3_uri):
    """`corpus.prepared` as a URI: the prepare uploads its finished directory (manifest last); a
    reader copies it once into its node's cache, checking every shard, and memory-maps the copy; a
    shard corrupted in the store is named when it is downloaded."""
    import pyarrow.fs as pafs

    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "home"))
    cfg = load_config(
        None, ["corpus.source=tiny", "tokenizer.vocab_size=300", f"corpus.prepared={s3_uri}"]
    )
    tokens, _ = load_tokenized(cfg)  # prepares into a local staging dir, uploads, then downloads
    local = config(tmp_path, "local", source="tiny")
    reference, _ = load_tokenized(local)
    for d in tokens.domains:
        assert (
            tokens.train[d][0 : len(tokens.train[d])].tolist()
            == reference.train[d][0 : len(reference.train[d])].tolist()
        )
    assert "prepared-cache" in str(tokens.train[tokens.domains[0]]._paths[0])
    fs, base = pafs.FileSystem.from_uri(s3_uri)
    manifest = read_manifest(Path(str(tokens.train[tokens.domains[0]]._paths[0])).parents[2])
    shard = f"{base}/{manifest.shards[2].file}"
    with fs.open_input_stream(shard) as f:
        data = bytearray(f.read())
    data[0] ^= 0xFF
    with fs.open_output_stream(shard) as f:
        f.write(bytes(data))
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "another_node"))  # a node without the copy
    with pytest.raises(
        PreparedCorpusError, match=f"{manifest.shards[2].file}.*fails its checksum after download"
    ):
        load_tokenized(cfg)


def test_tokenizer_actors_skip_the_domains_the_driver_has_no_room_for(ray_session):
    """A domain whose caps are reached is dropped before encoding (the driver would drop it after)."""
    import pyarrow as pa
    import ray

    from acodm_ray.data.doc_ops import DocSpec, Encoder, FullDomains

    tok = wrap(train_bpe(iter(["some text to learn from", "more text"]), 300))
    board = FullDomains.remote()
    spec = DocSpec("text", "domain", {}, None)
    encoder = Encoder(
        [ray.put(tok.backend_tokenizer.to_str()), board], tok.eos_token_id, "uint16", spec
    )
    block = pa.table({"text": ["one doc", "two doc", "three"], "domain": ["a", "b", "a"]})

    def domains() -> list[str]:
        return pa.concat_tables(encoder(block)).column("domain").to_pylist()

    assert domains() == ["a", "b", "a"]
    ray.get(board.set.remote(["a"]))
    assert domains() == ["b"]


def test_text_pieces_cut_between_documents_at_the_byte_limit():
    """Hand-computed: sizes 3, 4, 2, 9, 2 bytes with a limit of 6 -> [3], [4, 2], [9], [2]; a
    document longer than the limit is a piece of its own, and no document is split or dropped."""
    import pyarrow as pa

    from acodm_ray.data.doc_ops import text_pieces

    docs = pa.table({"text": ["abc", "defg", "hi", "jklmnopqr", "é"]})  # é: 2 bytes in UTF-8
    pieces = [p.column("text").to_pylist() for p in text_pieces(docs, 6)]
    assert pieces == [["abc"], ["defg", "hi"], ["jklmnopqr"], ["é"]]
    assert list(text_pieces(docs.slice(0, 0), 6)) == []


def test_an_encoder_block_larger_than_a_piece_comes_out_in_pieces_with_the_same_tokens(
    ray_session, monkeypatch
):
    """An actor encodes a large block a piece at a time (its memory follows the piece, not the
    block): the pieces are several tables whose rows, concatenated, are the one-piece output."""
    import pyarrow as pa
    import ray

    from acodm_ray.data import doc_ops
    from acodm_ray.data.doc_ops import DocSpec, Encoder, FullDomains

    tok = wrap(train_bpe(iter(["some text to learn from", "more text"]), 300))
    spec = DocSpec("text", "domain", {}, None)
    refs = [ray.put(tok.backend_tokenizer.to_str()), FullDomains.remote()]
    encoder = Encoder(refs, tok.eos_token_id, "uint16", spec)
    texts = [f"document {i} has some text to learn from" * (1 + i % 3) for i in range(40)]
    block = pa.table({"text": texts, "domain": ["a", "b"] * 20})
    whole = list(encoder(block))
    monkeypatch.setattr(doc_ops, "ENCODE_BYTES", 200)
    pieces = list(encoder(block))
    assert len(whole) == 1 and len(pieces) > 5
    assert pa.concat_tables(pieces).equals(whole[0])
    assert max(sum(p.column("chars").to_pylist()) for p in pieces) <= 200  # ASCII: chars = bytes


def test_the_prepare_reads_blocks_no_larger_than_its_block_size_and_restores_ray_data(
    ray_session, tmp_path, monkeypatch
):
    """Inside the prepare a read task's blocks stay near BLOCK_BYTES (Ray would otherwise join a
    reader's tables up to 128 MiB, held whole by the read task); afterwards the caller's Ray Data
    settings are as they were."""
    import ray.data

    from acodm_ray.data import readers

    monkeypatch.setattr(prepare_module, "BLOCK_BYTES", 256 << 10)
    monkeypatch.setattr(readers, "JSON_BLOCK_BYTES", 32 << 10)
    rows = [{"text": f"document {i} " + "words of text " * 60, "domain": "a"} for i in range(3000)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)  # ~2.6 MB
    plan = plan_source(config(tmp_path, source="json", data_files={"train": [train]}).corpus)
    before = ray.data.DataContext.get_current().target_max_block_size
    with prepare_module.ray_for_prepare():
        blocks = list(
            readers.read_inputs(plan, plan.inputs).iter_batches(
                batch_format="pyarrow", batch_size=None
            )
        )
    assert sum(b.num_rows for b in blocks) == 3000
    assert len(blocks) >= 8 and max(b.nbytes for b in blocks) <= (256 + 32) << 10
    assert ray.data.DataContext.get_current().target_max_block_size == before
