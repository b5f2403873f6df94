"""The one call every consumer makes: the experiment's prepared corpus, opened.

    tokens, tokenizer = load_tokenized(cfg)

prepares the corpus first if `corpus.prepared` names nothing yet (the same Ray Data job as
`acodm corpus prepare`; on a cluster the driver does this once, before any worker starts:
`with_prepared`), then opens it: memory-mapped shards, no text, no whole domain in memory.
"""

from __future__ import annotations

import dataclasses
import threading

from transformers import PreTrainedTokenizerFast

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.manifest import TOKENIZER_DIR
from acodm_ray.data.prepared import check_matches, ensure_prepared, open_location
from acodm_ray.data.tokenizer import load_tokenizer
from acodm_ray.data.tokens import TokenizedCorpus

# One prepare at a time per process: `jobs/compare.py` starts several runs on driver threads, and
# each asks for the corpus (the file lock in `prepared.locked` orders processes as well).
_LOAD_LOCK = threading.Lock()


def load_tokenized(cfg: ExperimentConfig) -> tuple[TokenizedCorpus, PreTrainedTokenizerFast]:
    """(TokenizedCorpus, tokenizer) of an experiment, preparing the corpus on first use."""
    with _LOAD_LOCK:
        location = ensure_prepared(cfg)
    return open_prepared(cfg, location)


def open_prepared(
    cfg: ExperimentConfig, location: str
) -> tuple[TokenizedCorpus, PreTrainedTokenizerFast]:
    """A prepared corpus at `location`, refused if it was made from another corpus or tokenizer."""
    root, manifest = open_location(location)
    check_matches(manifest, cfg, location)
    return TokenizedCorpus.from_manifest(root, manifest), load_tokenizer(root / TOKENIZER_DIR)


def with_prepared(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with `corpus.prepared` pointing at its prepared corpus (prepared here if needed): what a
    driver hands its workers, so none of them prepares or resolves anything itself."""
    with _LOAD_LOCK:
        location = ensure_prepared(cfg)
    return dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, prepared=location))
