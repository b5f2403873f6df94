"""Tokenizer training/loading/caching and the per-domain token streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from acodm_ray.config import CorpusConfig, TokenizerConfig
from acodm_ray.data import tokenizer as tokmod
from acodm_ray.data import tokens as tokensmod
from acodm_ray.data.corpus import TextCorpus, load_text_corpus
from acodm_ray.data.tokenizer import EOS, TokenizerError, load_or_train_tokenizer, load_tokenizer
from acodm_ray.data.tokens import TokenizedCorpus, tokenize_corpus

SAMPLE = "def f(x):\n    return  x ** 2  # héllo, 世界\n\n\tThe LORD said; \\fBbold\\fP {Ileum}.\n"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> TextCorpus:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACODM_HOME", str(tmp_path_factory.mktemp("home")))
        return load_text_corpus(CorpusConfig(source="tiny"))


@pytest.fixture
def counted_training(monkeypatch) -> list[int]:
    """Counts calls of the BPE trainer (a cache hit must not train)."""
    calls: list[int] = []
    real = tokmod.train_bpe

    def counting(texts, vocab_size):
        calls.append(vocab_size)
        return real(texts, vocab_size)

    monkeypatch.setattr(tokmod, "train_bpe", counting)
    return calls


def test_trains_roundtrips_and_caches(corpus, home, counted_training):
    cfg = TokenizerConfig(vocab_size=512, train_max_chars_per_domain=20_000)
    tok = load_or_train_tokenizer(cfg, corpus)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 512 and tok.eos_token == EOS and tok.eos_token_id is not None
    assert tok.pad_token == EOS and tok.bos_token == EOS
    ids = tok.encode(SAMPLE, add_special_tokens=False)
    assert tok.decode(ids) == SAMPLE  # byte-level: exact, no clean-up of spaces
    assert tok.convert_tokens_to_ids(EOS) == tok.eos_token_id
    assert counted_training == [512]

    again = load_or_train_tokenizer(cfg, corpus)
    assert counted_training == [512]  # cache hit: no second training
    assert again.encode(SAMPLE) == tok.encode(SAMPLE)
    assert tokmod.tokenizer_hash(again) == tokmod.tokenizer_hash(tok)
    assert tokmod.tokenizer_cache_path(cfg, corpus).is_relative_to(home / "tokenizers")

    load_or_train_tokenizer(
        TokenizerConfig(vocab_size=300, train_max_chars_per_domain=20_000), corpus
    )
    assert counted_training == [512, 300]  # the config is part of the cache key


def test_every_domain_feeds_training(corpus):
    texts = list(tokmod.training_texts(corpus, 1_000))
    assert sum(map(len, texts)) <= 1_000 * len(corpus.domains)
    for domain in corpus.domains:
        assert corpus.train[domain][0][:1_000] in texts


def test_loads_saved_dir_and_tokenizer_json(corpus, home, tmp_path):
    tok = load_or_train_tokenizer(
        TokenizerConfig(vocab_size=400, train_max_chars_per_domain=20_000), corpus
    )
    out = tmp_path / "saved"
    tok.save_pretrained(str(out))
    from_dir = load_or_train_tokenizer(TokenizerConfig(path=str(out)), corpus)
    from_json = load_tokenizer(out / "tokenizer.json")  # no config: eos found in the vocab
    hf = AutoTokenizer.from_pretrained(str(out), local_files_only=True)  # plain HF tools load it
    for other in (from_dir, from_json, hf):
        assert other.encode(SAMPLE, add_special_tokens=False) == tok.encode(
            SAMPLE, add_special_tokens=False
        )
        assert other.eos_token_id == tok.eos_token_id
        assert other.decode(other.encode(SAMPLE, add_special_tokens=False)) == SAMPLE


def test_tokenizer_errors(corpus, tmp_path):
    with pytest.raises(TokenizerError, match="not found: .*missing_tok"):
        load_or_train_tokenizer(TokenizerConfig(path=str(tmp_path / "missing_tok")), corpus)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TokenizerError, match="empty_dir.*tokenizer.json"):
        load_tokenizer(tmp_path / "empty_dir")
    with pytest.raises(TokenizerError, match="vocab_size.*257"):
        load_or_train_tokenizer(TokenizerConfig(vocab_size=100), corpus)
    assert issubclass(TokenizerError, ValueError)


def test_tokenize_corpus_streams_and_cache(corpus, home, monkeypatch):
    tok = load_or_train_tokenizer(
        TokenizerConfig(vocab_size=512, train_max_chars_per_domain=20_000), corpus
    )
    tc = tokenize_corpus(corpus, tok)
    assert isinstance(tc, TokenizedCorpus) and tc.domains == corpus.domains
    assert tc.vocab_size == len(tok) and tc.eos_id == tok.eos_token_id
    for split in ("train", "validation"):
        for d in tc.domains:
            stream = getattr(tc, split)[d]
            docs = getattr(corpus, split)[d]
            assert stream.dtype == np.int32 and stream.ndim == 1
            assert stream.min() >= 0 and stream.max() < tc.vocab_size
            assert int((stream == tc.eos_id).sum()) == len(docs)  # one eos after each document
            assert stream[-1] == tc.eos_id
    first = corpus.train[tc.domains[0]][0]
    n = len(tok.encode(first, add_special_tokens=False))
    assert tok.decode(tc.train[tc.domains[0]][:n].tolist()) == first
    assert tc.train[tc.domains[0]][n] == tc.eos_id

    p = tc.natural_proportions()
    assert p.dtype == np.float64 and p.shape == (len(tc.domains),)
    assert np.isclose(p.sum(), 1.0) and (p > 0).all() and p.max() > 2 * p.min()

    def no_encoding(*args, **kwargs):
        raise AssertionError("cache hit expected")

    monkeypatch.setattr(tokensmod, "encode_documents", no_encoding)
    cached = tokenize_corpus(corpus, tok)
    assert cached.domains == tc.domains and cached.eos_id == tc.eos_id
    for d in tc.domains:
        np.testing.assert_array_equal(cached.train[d], tc.train[d])
        np.testing.assert_array_equal(cached.validation[d], tc.validation[d])
        assert cached.train[d].dtype == np.int32
    assert tokensmod.token_cache_path(corpus, tok).is_relative_to(home / "tokens")


def test_tokenize_without_cache_writes_nothing(corpus, home):
    small = TextCorpus(
        corpus.domains[:2],
        {d: corpus.train[d][:1] for d in corpus.domains[:2]},
        {d: corpus.validation[d][:1] for d in corpus.domains[:2]},
    )
    tok = load_or_train_tokenizer(
        TokenizerConfig(vocab_size=300, train_max_chars_per_domain=5_000), small
    )
    tc = tokenize_corpus(small, tok, cache=False)
    assert not (home / "tokens").exists()
    assert all(tc.train[d].size > 0 for d in small.domains)
