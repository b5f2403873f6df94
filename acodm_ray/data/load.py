"""Corpus -> tokenizer -> per-domain token streams, the one call every entry point makes."""

from __future__ import annotations

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.corpus import load_text_corpus
from acodm_ray.data.tokenizer import load_or_train_tokenizer
from acodm_ray.data.tokens import TokenizedCorpus, tokenize_corpus


def load_tokenized(cfg: ExperimentConfig):
    """(TokenizedCorpus, tokenizer) for an experiment; cached on disk after the first call."""
    text = load_text_corpus(cfg.corpus)
    tokenizer = load_or_train_tokenizer(cfg.tokenizer, text)
    tokens: TokenizedCorpus = tokenize_corpus(text, tokenizer)
    return tokens, tokenizer
