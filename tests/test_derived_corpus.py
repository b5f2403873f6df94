"""The benchmark's derived corpora (benchmarks/derived_corpus.py): the decoy settings hold what their
docs promise, and the known-answer weight files name exactly their setting's domains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from acodm_ray.data.build import domain_specs
from benchmarks import derived_corpus

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
    [("decoys", ["noise", "repeated"]), ("swamped", derived_corpus.SWAMPED_DECOYS)],
)
def test_known_answer_files_put_uniform_weight_on_the_real_domains_only(setting, decoys):
    weights = yaml.safe_load(
        (ROOT / "benchmarks" / "weights" / f"{setting}_real_only.yaml").read_text()
    )
    real = [spec.name for spec in domain_specs()]
    assert list(weights) == real + decoys
    assert [weights[d] for d in real] == pytest.approx([1 / len(real)] * len(real))
    assert [weights[d] for d in decoys] == [0] * len(decoys)
