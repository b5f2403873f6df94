"""The tokenizer: a byte-level BPE that round-trips any text exactly, saved and loaded by plain HF
tools, trained on each domain's first characters or given by path, and kept with the prepared corpus."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from acodm_ray.config import load_config
from acodm_ray.data import prepare as prepare_module
from acodm_ray.data import tokenizer_pass
from acodm_ray.data.build import TINY_DIR
from acodm_ray.data.load import load_tokenized
from acodm_ray.data.tokenizer import (
    EOS,
    TokenizerError,
    load_tokenizer,
    tokenizer_hash,
    train_bpe,
    wrap,
)

SAMPLE = "def f(x):\n    return  x ** 2  # héllo, 世界\n\n\tThe LORD said; \\fBbold\\fP {Ileum}.\n"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    with gzip.open(TINY_DIR / "train.jsonl.gz", "rt") as f:
        return [json.loads(line)["text"][:5_000] for line in f][:40]


def test_bpe_roundtrips_exactly_with_eos_as_every_special(texts):
    tok = wrap(train_bpe(iter(texts), 512))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 512 and tok.eos_token == EOS and tok.eos_token_id is not None
    assert tok.pad_token == EOS and tok.bos_token == EOS
    ids = tok.encode(SAMPLE, add_special_tokens=False)
    assert tok.decode(ids) == SAMPLE  # byte-level: exact, no clean-up of spaces
    assert tokenizer_hash(wrap(train_bpe(iter(texts), 512))) == tokenizer_hash(tok)  # deterministic
    assert tokenizer_hash(wrap(train_bpe(iter(texts), 300))) != tokenizer_hash(tok)


def test_loads_saved_dir_and_tokenizer_json(texts, tmp_path):
    tok = wrap(train_bpe(iter(texts), 400))
    out = tmp_path / "saved"
    tok.save_pretrained(str(out))
    from_dir = load_tokenizer(out)
    from_json = load_tokenizer(out / "tokenizer.json")  # no config: eos found in the vocab
    hf = AutoTokenizer.from_pretrained(str(out), local_files_only=True)  # plain HF tools load it
    for other in (from_dir, from_json, hf):
        assert other.encode(SAMPLE, add_special_tokens=False) == tok.encode(
            SAMPLE, add_special_tokens=False
        )
        assert other.eos_token_id == tok.eos_token_id
        assert other.decode(other.encode(SAMPLE, add_special_tokens=False)) == SAMPLE


def test_tokenizer_errors_come_before_any_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(
        tokenizer_pass, "training_texts", lambda *a: pytest.fail("the corpus was read")
    )
    plan = None  # obtain_tokenizer refuses these before it reads anything
    with pytest.raises(TokenizerError, match="not found: .*missing_tok"):
        tokenizer_pass.obtain_tokenizer(
            load_config(None, [f"tokenizer.path={tmp_path / 'missing_tok'}"]), plan
        )
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TokenizerError, match="empty_dir.*tokenizer.json"):
        load_tokenizer(tmp_path / "empty_dir")
    with pytest.raises(TokenizerError, match="vocab_size.*257"):
        tokenizer_pass.obtain_tokenizer(load_config(None, ["tokenizer.vocab_size=100"]), plan)
    assert issubclass(TokenizerError, ValueError)


def test_a_given_tokenizer_is_kept_with_the_prepared_corpus(
    ray_session, texts, tmp_path, monkeypatch
):
    """`tokenizer.path` is used as it is (no training, not even a read for it), copied into the
    prepared directory, and the streams are encoded with it."""
    tok = wrap(train_bpe(iter(texts), 400))
    tok.save_pretrained(str(tmp_path / "mine"))
    monkeypatch.setattr(
        tokenizer_pass, "training_texts", lambda *a: pytest.fail("trained a tokenizer")
    )
    cfg = load_config(None, ["corpus.source=tiny", f"tokenizer.path={tmp_path / 'mine'}",
                             f"corpus.prepared={tmp_path / 'prepared'}"])  # fmt: skip
    tokens, prepared_tok = load_tokenized(cfg)
    assert tokenizer_hash(prepared_tok) == tokenizer_hash(tok)
    assert (tmp_path / "prepared" / "tokenizer" / "tokenizer.json").exists()
    assert tokens.vocab_size == 400 and tokens.eos_id == tok.eos_token_id
    with gzip.open(TINY_DIR / "train.jsonl.gz", "rt") as f:
        first = next(
            json.loads(line)["text"]
            for line in f
            if json.loads(line)["domain"] == tokens.domains[0]
        )
    ids = tok.encode(first, add_special_tokens=False) + [tok.eos_token_id]
    assert (
        tokens.train[tokens.domains[0]][0 : len(ids)].tolist() == ids
    )  # encoded with the given one
    p = tokens.natural_proportions()
    assert p.dtype == np.float64 and np.isclose(p.sum(), 1.0) and p.max() > 2 * p.min()
    # a second load opens the directory: no prepare runs again
    monkeypatch.setattr(
        prepare_module, "prepare_into", lambda *a, **k: pytest.fail("prepared again")
    )
    again, _ = load_tokenized(cfg)
    assert again.domains == tokens.domains
