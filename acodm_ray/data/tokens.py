"""Per-domain token streams: every domain's documents encoded once and joined by eos.

The mixture sampler cuts fixed-length windows out of these streams, so a domain is just one flat
int32 array per split. Encoding runs in Rust (`tokenizers.encode_batch`, multi-threaded) and the
result is cached as .npy files keyed by corpus fingerprint + tokenizer hash, so proxies, Ray
workers and repeated runs tokenize a corpus once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from acodm_ray.config import cache_dir
from acodm_ray.data.corpus import TextCorpus
from acodm_ray.data.tokenizer import tokenizer_hash

TOKENS_FORMAT = 1
ENCODE_BATCH_DOCS = 256
SPLITS = ("train", "validation")


@dataclass
class TokenizedCorpus:
    """One 1-D int32 token stream per domain and split (each document followed by eos)."""

    domains: list[str]
    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    vocab_size: int
    eos_id: int

    def natural_proportions(self) -> np.ndarray:
        """Train tokens of each domain / all train tokens (float64, domain order): the
        "natural" mixture, and ODM's starting weights."""
        counts = np.array([self.train[d].size for d in self.domains], dtype=np.float64)
        return counts / counts.sum()


def tokenize_corpus(
    corpus: TextCorpus, tokenizer: PreTrainedTokenizerFast, cache: bool = True
) -> TokenizedCorpus:
    """Encode every domain of `corpus` (cached under cache_dir()/"tokens" when cache=True)."""
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no eos token; documents are joined by eos")
    vocab_size = len(tokenizer)
    if vocab_size > np.iinfo(np.int32).max:
        raise ValueError(f"vocab_size {vocab_size} does not fit int32 token ids")
    path = token_cache_path(corpus, tokenizer)
    if cache and (path / "meta.json").exists():
        return load_tokens(path)
    backend = tokenizer.backend_tokenizer
    streams = {
        split: {
            d: encode_documents(backend, getattr(corpus, split)[d], eos_id) for d in corpus.domains
        }
        for split in SPLITS
    }
    tokens = TokenizedCorpus(
        list(corpus.domains), streams["train"], streams["validation"], vocab_size, int(eos_id)
    )
    if cache:
        save_tokens(tokens, path)
    return tokens


def token_cache_path(corpus: TextCorpus, tokenizer: PreTrainedTokenizerFast) -> Path:
    key = f"{TOKENS_FORMAT}|{corpus.fingerprint()}|{tokenizer_hash(tokenizer)}"
    return cache_dir() / "tokens" / hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_documents(backend, docs: list[str], eos_id: int) -> np.ndarray:
    """ids(doc_0) eos ids(doc_1) eos ... as int32, encoded in batches (bounded memory)."""
    ids: list[int] = []
    for start in range(0, len(docs), ENCODE_BATCH_DOCS):
        for enc in backend.encode_batch(
            docs[start : start + ENCODE_BATCH_DOCS], add_special_tokens=False
        ):
            ids.extend(enc.ids)
            ids.append(eos_id)
    return np.asarray(ids, dtype=np.int32)


def save_tokens(tokens: TokenizedCorpus, path: Path) -> None:
    """.npy per domain and split plus meta.json, written to a temp sibling and renamed, so a
    reader never sees a partial cache (files are named by domain index: any domain name works)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for split in SPLITS:
            for i, domain in enumerate(tokens.domains):
                np.save(tmp / f"{split}_{i}.npy", getattr(tokens, split)[domain])
        meta = {
            "format": TOKENS_FORMAT,
            "domains": tokens.domains,
            "vocab_size": tokens.vocab_size,
            "eos_id": tokens.eos_id,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:
        if not (path / "meta.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokens(path: Path) -> TokenizedCorpus:
    meta = json.loads((path / "meta.json").read_text())
    domains = meta["domains"]
    streams = {
        split: {d: np.load(path / f"{split}_{i}.npy") for i, d in enumerate(domains)}
        for split in SPLITS
    }
    return TokenizedCorpus(
        domains,
        streams["train"],
        streams["validation"],
        int(meta["vocab_size"]),
        int(meta["eos_id"]),
    )
