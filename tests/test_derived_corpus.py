"""The derived corpora (acodm_ray/data/derived.py; `acodm corpus derive` and
benchmarks/derived_corpus.py run it): the decoy settings hold what their docs promise, and the
known-answer weight files name exactly their setting's domains."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from acodm_ray.data import derived as derived_corpus
from acodm_ray.data.build import domain_specs

ROOT = Path(__file__).resolve().parents[1]
REAL = ["code", "prose"]


@pytest.fixture()
def bundled(tmp_path, monkeypatch):
    """A two-domain stand-in for the bundled corpus under a private ACODM_HOME."""
    monkeypatch.setenv("ACODM_HOME", str(tmp_path))
    src = derived_corpus.default_corpus_dir()
    rows = {
        "train": [
            {"text": f"{d} document {i} with words {d}{i}", "domain": d}
            for d in REAL
            for i in range(5)
        ],
        "validation": [{"text": f"{d} held out {i}", "domain": d} for d in REAL for i in range(2)],
    }
    derived_corpus.write_corpus(
        src, rows, {"name": src.name, "domains": {d: {"description": d} for d in REAL}}
    )
    return src, rows


def _read(out: Path, split: str) -> list[dict]:
    return derived_corpus.read_rows(out / f"{split}.jsonl")


def test_swamped_adds_as_many_decoys_as_the_bundled_corpus_has_real_domains(bundled):
    src, rows = bundled
    out = derived_corpus.derive("swamped")
    manifest = json.loads((out / "manifest.json").read_text())
    decoys = derived_corpus.SWAMPED_DECOYS
    assert list(manifest["domains"]) == REAL + decoys and len(decoys) == len(domain_specs())
    for split in ("train", "validation"):
        words = {
            w for r in rows[split] for w in r["text"].split()
        }  # each split draws from its own words
        got = _read(out, split)
        assert got[: len(rows[split])] == rows[split]  # the real documents, untouched
        by_domain = {d: [r["text"] for r in got if r["domain"] == d] for d in decoys}
        assert {d: len(t) for d, t in by_domain.items()} == {
            d: derived_corpus.DECOY_DOCS[split] for d in decoys
        }
        for d in decoys[
            : derived_corpus.SWAMPED_NOISE
        ]:  # noise: corpus words, DOC_WORDS of them, fresh draws
            assert all(
                len(t.split()) == derived_corpus.DOC_WORDS and set(t.split()) <= words
                for t in by_domain[d]
            )
        assert (
            len({by_domain[d][0] for d in decoys[: derived_corpus.SWAMPED_NOISE]})
            == derived_corpus.SWAMPED_NOISE
        )
        passages = [by_domain[d][0] for d in decoys[derived_corpus.SWAMPED_NOISE :]]
        assert passages == [p * 30 for p in derived_corpus.PASSAGES]


def test_decoys_keeps_its_two_decoys(bundled):
    out = derived_corpus.derive("decoys")
    assert list(json.loads((out / "manifest.json").read_text())["domains"]) == REAL + [
        "noise",
        "repeated",
    ]
    got = _read(out, "train")
    assert [r["text"] for r in got if r["domain"] == "repeated"] == [
        derived_corpus.PASSAGES[0] * 30
    ] * 400


@pytest.mark.parametrize(
    "setting, decoys",
    [
        ("decoys", ["noise", "repeated"]),
        ("swamped", derived_corpus.SWAMPED_DECOYS),
        ("junk", derived_corpus.JUNK_DECOYS),
    ],
)
def test_known_answer_files_put_uniform_weight_on_the_real_domains_only(setting, decoys):
    weights = yaml.safe_load(
        (ROOT / "benchmarks" / "weights" / f"{setting}_real_only.yaml").read_text()
    )
    real = [spec.name for spec in domain_specs()]
    assert list(weights) == real + decoys
    assert [weights[d] for d in real] == pytest.approx([1 / len(real)] * len(real))
    assert [weights[d] for d in decoys] == [0] * len(decoys)


JUNK_REAL = ["python_code", "manuals", "literature", "legal"]  # the junk decoys' sources among them


@pytest.fixture()
def bundled_named(tmp_path, monkeypatch):
    """A stand-in for the bundled corpus with the domains the junk decoys copy from."""
    monkeypatch.setenv("ACODM_HOME", str(tmp_path))
    src = derived_corpus.default_corpus_dir()
    rows = {
        split: [
            {"text": f"The {d} text {split} {i} says Hello to {d}{i} " * 3, "domain": d}
            for d in JUNK_REAL
            for i in range(n)
        ]
        for split, n in (("train", 4), ("validation", 2))
    }
    derived_corpus.write_corpus(
        src, rows, {"name": src.name, "domains": {d: {"description": d} for d in JUNK_REAL}}
    )
    return rows


def test_junk_adds_seven_decoys_of_four_other_kinds(bundled_named):
    """Random bytes, machine logs, near-duplicates and Cyrillic-mapped prose: each what its doc
    says, the real documents untouched, as many decoys as the bundled corpus has real domains."""
    rows = bundled_named
    out = derived_corpus.derive("junk")
    manifest = json.loads((out / "manifest.json").read_text())
    decoys = derived_corpus.JUNK_DECOYS
    assert list(manifest["domains"]) == JUNK_REAL + decoys and len(decoys) == len(domain_specs())
    assert not set(decoys) & {"noise", "repeated", *derived_corpus.SWAMPED_DECOYS}
    for split in ("train", "validation"):
        got = _read(out, split)
        assert got[: len(rows[split])] == rows[split]
        docs = {d: [r["text"] for r in got if r["domain"] == d] for d in decoys}
        assert {d: len(t) for d, t in docs.items()} == {
            d: derived_corpus.DECOY_DOCS[split] for d in decoys
        }
        # random bytes: printable ASCII drawn uniformly, every document different
        assert all(
            len(t) == derived_corpus.BYTES_CHARS and all(32 <= ord(c) < 127 for c in t)
            for t in docs["bytes1"]
        )
        assert len(set(docs["bytes1"])) == len(docs["bytes1"])
        assert all(
            base64.b64decode("".join(t.split("\n")))
            and max(len(line) for line in t.split("\n")) == 76
            for t in docs["bytes2"]
        )
        # machine logs: LOG_LINES lines of one template, the fields random
        for t in docs["logs1"]:
            lines = t.split("\n")
            assert len(lines) == derived_corpus.LOG_LINES
            assert all(
                re.fullmatch(
                    r"Mar [ \d]\d \d\d:\d\d:\d\d host\d+ \w+\[\d+\]: \w+ for user\d+ from 10(\.\d+){3} port \d+",
                    x,
                )
                for x in lines
            )
        records = [json.loads(x) for t in docs["logs2"] for x in t.split("\n")]
        assert {tuple(r) for r in records} == {("ts", "device", "sensor", "value", "status")}
        # near-duplicates of the first TRAINING document of their source (both splits), ~3% edited
        for d, source in derived_corpus.DUPE_SOURCES.items():
            original = next(r["text"] for r in rows["train"] if r["domain"] == source).split()
            copies = [t.split() for t in docs[d]]
            assert all(len(c) == len(original) for c in copies)
            changed = np.mean([a != b for c in copies for a, b in zip(c, original)])
            assert 0.3 * derived_corpus.DUPE_EDIT < changed < 1.5 * derived_corpus.DUPE_EDIT
            assert len({" ".join(c) for c in copies}) > 1
        # Cyrillic: the split's own literature documents, no Latin letter left, mapped back exactly
        back = str.maketrans({v: k for k, v in derived_corpus.CYRILLIC.items()})
        lit = [
            " ".join(r["text"].split()[: derived_corpus.DOC_WORDS])
            for r in rows[split]
            if r["domain"] == "literature"
        ]
        assert all(not re.search("[A-Za-z]", t) for t in docs["cyrillic"])
        assert [t.translate(back) for t in docs["cyrillic"]] == [
            lit[i % len(lit)] for i in range(derived_corpus.DECOY_DOCS[split])
        ]


def test_the_cli_derives_once_and_a_missing_derived_corpus_says_how_to_make_it(bundled, capsys):
    """`acodm corpus derive` writes what `derive` writes and keeps it on a second call (no
    --force), so prepared shards keyed on its files stay valid; a config that reads a derived
    corpus not yet written is told the command."""
    from acodm_ray import cli
    from acodm_ray.config import load_config
    from acodm_ray.data.corpus_errors import CorpusNotBuiltError
    from acodm_ray.data.sources import plan_source

    corpus = load_config(None, ["corpus.path=debian-v1-swamped"]).corpus
    with pytest.raises(CorpusNotBuiltError, match="run `acodm corpus derive swamped`"):
        plan_source(corpus)
    assert cli.main(["corpus", "derive", "swamped"]) == 0
    out = derived_corpus.derived_dir("swamped")
    assert f"corpus ready: {out}" in capsys.readouterr().out
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert cli.main(["corpus", "derive", "swamped"]) == 0  # kept, not rewritten
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == files
    assert plan_source(corpus).domain_order == REAL + derived_corpus.SWAMPED_DECOYS
    derived_corpus.derive("swamped", force=True)  # the benchmark's rewrite: the same bytes
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: v[0] for k, v in files.items()}
