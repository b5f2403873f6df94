"""The prepared corpus on disk: `manifest.json`, the tokenizer, and per-domain token shards.

    <prepared>/manifest.json         written last: a directory without it is not (yet) prepared
    <prepared>/tokenizer/            the tokenizer the shards were encoded with (save_pretrained)
    <prepared>/<split>/<domain>/NNNNN.bin   raw token ids (uint16 when the vocabulary fits, else uint32)

A domain's shards, in order, are its token stream (each document's ids followed by eos, documents
in source order) cut every `shard_tokens` tokens; the last one is shorter. The manifest lists every
shard with its domain, split, token and document counts and sha256, plus what the corpus was made
from (the source's fingerprint and the tokenizer's hash), so a training run can refuse a directory
prepared from something else, naming both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.data.corpus_errors import CorpusError

MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = 1
KIND = "acodm-prepared-corpus"
SPLITS = ("train", "validation")


class PreparedCorpusError(CorpusError):
    """A prepared directory is missing, incomplete, corrupt, or made from another corpus."""


def token_dtype(vocab_size: int) -> str:
    """uint16 when every id fits (vocabularies up to 65,536), else uint32."""
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max + 1 else "uint32"


def domain_dir(domain: str) -> str:
    """A file-system-safe directory name for any domain name (spaces, slashes, unicode), unique
    by a short hash of the name itself."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", domain).strip("._")[:40] or "domain"
    return f"{slug}-{hashlib.sha256(domain.encode('utf-8')).hexdigest()[:8]}"


def shard_path(split: str, domain: str, index: int) -> str:
    """Shard `index` of a domain's split, relative to the prepared directory."""
    return f"{split}/{domain_dir(domain)}/{index:05d}.bin"


@dataclass
class ShardInfo:
    split: str
    domain: str
    file: str  # relative to the prepared directory
    tokens: int
    documents: int  # documents whose closing eos is in this shard
    sha256: str


@dataclass
class DomainStats:
    tokens: int = 0
    documents: int = 0
    characters: int = 0


@dataclass
class Manifest:
    domains: list[str]
    vocab_size: int
    eos_id: int
    dtype: str
    shard_tokens: int
    tokenizer_hash: str
    source: dict[str, Any]  # {"fingerprint", "spec", "files"}: what was read (sources.SourcePlan)
    shards: list[ShardInfo]
    stats: dict[str, dict[str, DomainStats]]  # split -> domain -> totals
    format: int = FORMAT
    kind: str = KIND
    made_by: dict[str, Any] = field(default_factory=dict)

    def shards_of(self, split: str, domain: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split and s.domain == domain]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            raw = json.loads(text)
            if raw.get("kind") != KIND:
                raise PreparedCorpusError(
                    f"{where} is not a prepared corpus manifest (kind {raw.get('kind')!r})"
                )
            if raw.get("format") != FORMAT:
                raise PreparedCorpusError(
                    f"{where} has format {raw.get('format')}, this version reads format {FORMAT}: "
                    "prepare the corpus again (`acodm corpus prepare`)"
                )
            raw["shards"] = [ShardInfo(**s) for s in raw["shards"]]
            raw["stats"] = {
                split: {d: DomainStats(**v) for d, v in per.items()}
                for split, per in raw["stats"].items()
            }
            return cls(**raw)
        except PreparedCorpusError:
            raise
        except (ValueError, KeyError, TypeError) as err:
            raise PreparedCorpusError(
                f"{where} is not a readable prepared-corpus manifest: {err}"
            ) from err


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.exists():
        hint = (
            " (a prepare was interrupted: run it again to continue)"
            if (root / "progress.json").exists()
            else ""
        )
        raise PreparedCorpusError(f"no prepared corpus at {root}: {MANIFEST} is missing{hint}")
    return Manifest.from_json(path.read_text(), str(path))


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_sizes(root: Path, manifest: Manifest) -> None:
    """Every shard exists with the size its token count says (cheap: one stat per shard)."""
    itemsize = np.dtype(manifest.dtype).itemsize
    for shard in manifest.shards:
        path = root / shard.file
        if not path.exists():
            raise PreparedCorpusError(
                f"shard {shard.file} of {shard.domain!r} ({shard.split}) is missing from {root}"
            )
        size = path.stat().st_size
        if size != shard.tokens * itemsize:
            raise PreparedCorpusError(
                f"shard {path} has {size} bytes, the manifest says {shard.tokens} tokens "
                f"({shard.tokens * itemsize} bytes): the file is truncated or corrupt"
            )


def verify_checksums(root: Path, manifest: Manifest, progress=None) -> None:
    """Every shard's sha256 against the manifest; the first that fails is named."""
    check_sizes(root, manifest)
    for shard in manifest.shards:
        if file_sha256(root / shard.file) != shard.sha256:
            raise PreparedCorpusError(
                f"shard {root / shard.file} ({shard.domain!r}, {shard.split}) fails its checksum: "
                "the file changed after it was prepared; prepare the corpus again"
            )
        if progress is not None:
            progress.update(1)


def summary_lines(manifest: Manifest) -> list[str]:
    """A table of what was prepared: tokens, documents and shards per domain and split."""
    rows = [
        f"{'domain':<20} {'train tokens':>14} {'docs':>9} {'val tokens':>12} {'docs':>7} {'shards':>6}"
    ]
    for d in manifest.domains:
        tr, va = manifest.stats["train"][d], manifest.stats["validation"][d]
        shards = len([s for s in manifest.shards if s.domain == d])
        rows.append(
            f"{d[:20]:<20} {tr.tokens:>14,} {tr.documents:>9,} {va.tokens:>12,} {va.documents:>7,} {shards:>6}"
        )
    total = sum(manifest.stats["train"][d].tokens for d in manifest.domains)
    rows.append(
        f"{len(manifest.domains)} domains, {total:,} train tokens ({manifest.dtype}), tokenizer {manifest.tokenizer_hash[:12]}"
    )
    return rows
