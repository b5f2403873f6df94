"""TokenizedCorpus: every domain's token stream per split, as the sampler and evaluation read them.

Each stream is a `TokenStream` over the memory-mapped shards of a prepared corpus
(`acodm corpus prepare`, `acodm_ray.data.prepare`): documents' ids followed by eos, in source
order. Nothing is read into memory when a corpus is opened; the sampler reads the windows it
draws. In-memory arrays are accepted too (synthetic corpora in tests and benchmarks) and wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acodm_ray.data.manifest import SPLITS, Manifest
from acodm_ray.data.token_stream import TokenStream


@dataclass
class TokenizedCorpus:
    """One token stream per domain and split (each document followed by eos)."""

    domains: list[str]
    train: dict[str, TokenStream]
    validation: dict[str, TokenStream]
    vocab_size: int
    eos_id: int

    def __post_init__(self) -> None:
        for split in SPLITS:
            streams = getattr(self, split)
            for d in self.domains:
                if not isinstance(streams[d], TokenStream):
                    streams[d] = TokenStream.from_array(streams[d])

    @classmethod
    def from_manifest(cls, root: Path, manifest: Manifest) -> TokenizedCorpus:
        """The streams of a prepared directory (shards opened lazily, on first read)."""
        streams = {
            split: {
                d: TokenStream(
                    [root / s.file for s in manifest.shards_of(split, d)],
                    [s.tokens for s in manifest.shards_of(split, d)],
                    manifest.dtype,
                )
                for d in manifest.domains
            }
            for split in SPLITS
        }
        return cls(
            list(manifest.domains),
            streams["train"],
            streams["validation"],
            manifest.vocab_size,
            manifest.eos_id,
        )

    def natural_proportions(self) -> np.ndarray:
        """Train tokens of each domain / all train tokens (float64, domain order): the
        "natural" mixture, and ODM's starting weights."""
        counts = np.array([self.train[d].size for d in self.domains], dtype=np.float64)
        return counts / counts.sum()
