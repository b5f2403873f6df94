"""Corpus -> tokenizer -> per-domain token streams, the one call every entry point makes."""

from __future__ import annotations

import threading

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.corpus import load_text_corpus
from acodm_ray.data.tokenizer import load_or_train_tokenizer
from acodm_ray.data.tokens import TokenizedCorpus, tokenize_corpus

# One load at a time per process. `jobs/compare.py` starts several target runs on driver threads, and
# each loads the corpus; Hugging Face `datasets` is not thread-safe there: its local-file loading runs
# tqdm's `thread_map`, whose `ensure_lock` deletes the tqdm class's lock on exit when it created it,
# so two threads loading at once fail with "type object 'tqdm' has no attribute '_lock'" (seen in a
# comparison here, and the likely cause of a CI run whose `acodm-online` failed at start). After the
# first load everything is cached on disk, so waiting costs little.
_LOAD_LOCK = threading.Lock()


def load_tokenized(cfg: ExperimentConfig):
    """(TokenizedCorpus, tokenizer) for an experiment; cached on disk after the first call."""
    with _LOAD_LOCK:
        text = load_text_corpus(cfg.corpus)
        tokenizer = load_or_train_tokenizer(cfg.tokenizer, text)
        tokens: TokenizedCorpus = tokenize_corpus(text, tokenizer)
    return tokens, tokenizer
