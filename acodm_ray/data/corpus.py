"""Multi-domain text: documents per domain and split, from any source `CorpusConfig` names.

All file and hub reading goes through Hugging Face `datasets` (`load_dataset("json" | "parquet" |
"csv" | "text", data_files=...)`, or a hub name), so any format it reads works and the Arrow
cache makes a second load fast. Local sources never touch the network; the Arrow cache of local
files lives under `cache_dir()/"hf_datasets"` (so ACODM_HOME isolates it too); hub datasets use
the standard Hugging Face cache.

Two ways to say which domain a document belongs to:
  - column mode (`data_files`: split -> files): a column names the domain, dotted for nested
    fields (`meta.pile_set_name` for The Pile). Splits: "train" and optionally "validation".
  - file mode (`domain_files`: domain -> files): every row of a domain's files belongs to it.
    For source "text" one FILE is one document (datasets' `sample_by="document"`), so code files
    and chapters stay whole; give a domain several files, or use jsonl with one row per document.

Domain order: `cfg.domains` when given, else the manifest's order for "bundled"/"tiny" (largest
first), the order of `domain_files` in file mode, and sorted names in column mode.
When a source has no validation split, every domain is split deterministically (fixed-seed
permutation) with `validation_fraction` (at least one document each).
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.config import CorpusConfig, cache_dir
from acodm_ray.data.build import TINY_DIR, default_corpus_dir
from acodm_ray.data.columns import Docs, collect_texts, group_by_domain
from acodm_ray.data.corpus_errors import (  # noqa: F401  (importable from here, as they always were)
    CorpusError,
    CorpusFileNotFoundError,
    CorpusNotBuiltError,
    DuplicateDomainError,
    EmptyDomainError,
    MissingColumnError,
    UnknownDomainError,
    UnknownSourceError,
)

SOURCES = ("bundled", "tiny", "json", "parquet", "text", "csv", "hub")
FILE_SOURCES = ("json", "parquet", "text", "csv")
SPLITS = ("train", "validation")
SPLIT_SEED = 0
BATCH_ROWS = 1000


@dataclass
class TextCorpus:
    """Documents per domain for training and per-domain validation."""

    domains: list[str]
    train: dict[str, list[str]]
    validation: dict[str, list[str]]

    def fingerprint(self) -> str:
        """sha256 of the domain names and every document, in order: the key of the tokenizer
        and token caches, so changing any text (or the domain order) invalidates them."""
        h = hashlib.sha256(b"acodm-text-corpus-v1")
        for domain in self.domains:
            h.update(b"\x00D" + domain.encode("utf-8"))
            for split, docs in (
                ("train", self.train[domain]),
                ("validation", self.validation[domain]),
            ):
                h.update(f"\x00S{split}:{len(docs)}".encode())
                for doc in docs:
                    data = doc.encode("utf-8")
                    h.update(len(data).to_bytes(8, "little"))
                    h.update(data)
        return h.hexdigest()

    def stats(self) -> dict[str, dict[str, int]]:
        """Characters and documents per domain and split (for logs and reports)."""
        return {
            d: {
                "train_docs": len(self.train[d]),
                "train_chars": sum(map(len, self.train[d])),
                "validation_docs": len(self.validation[d]),
                "validation_chars": sum(map(len, self.validation[d])),
            }
            for d in self.domains
        }


# ------------------------------------------------------------------------------- entry point


def load_text_corpus(cfg: CorpusConfig) -> TextCorpus:
    """Read the corpus `cfg` describes; raise a `CorpusError` subclass naming any problem."""
    if cfg.source not in SOURCES:
        raise UnknownSourceError(
            f"unknown corpus.source {cfg.source!r}; choose one of {', '.join(SOURCES)}"
        )
    check_unique(cfg.domains, "corpus.domains")
    train, validation, order = _read_source(cfg)
    if validation is None:
        train, validation = split_validation(train, cfg.validation_fraction)
    domains = select_domains(order, cfg.domains)
    train = {d: train.get(d, []) for d in domains}
    validation = {d: validation.get(d, []) for d in domains}
    if cfg.max_docs_per_domain is not None:
        if cfg.max_docs_per_domain < 1:
            raise CorpusError(
                f"corpus.max_docs_per_domain must be >= 1, got {cfg.max_docs_per_domain}"
            )
        train = {d: v[: cfg.max_docs_per_domain] for d, v in train.items()}
        validation = {d: v[: cfg.max_docs_per_domain] for d, v in validation.items()}
    check_not_empty(train, validation)
    return TextCorpus(domains=domains, train=train, validation=validation)


def _read_source(cfg: CorpusConfig) -> tuple[Docs, Docs | None, list[str]]:
    """(train, validation or None, default domain order) for any source."""
    if cfg.source in ("bundled", "tiny"):
        return _read_packaged(cfg)
    if cfg.source == "hub":
        return _read_hub(cfg)
    if cfg.data_files and cfg.domain_files:
        raise CorpusError(
            "give corpus.data_files (column mode) or corpus.domain_files (file mode), not both"
        )
    if cfg.domain_files:
        return _read_domain_files(cfg)
    if cfg.data_files:
        return _read_column_files(cfg)
    raise CorpusError(
        f"corpus.source={cfg.source!r} needs corpus.data_files (split -> files, domain from "
        f"corpus.domain_column) or corpus.domain_files (domain -> files)"
    )


# ------------------------------------------------------------------------------- sources


def _read_packaged(cfg: CorpusConfig) -> tuple[Docs, Docs | None, list[str]]:
    """The bundled corpus (built once by `acodm corpus build`) or the tiny slice shipped inside
    the package. Both are jsonl with fixed "text"/"domain" columns."""
    if cfg.source == "tiny":
        root, ext = Path(cfg.path) if cfg.path else TINY_DIR, ".jsonl.gz"
    else:
        root, ext = Path(cfg.path).expanduser() if cfg.path else default_corpus_dir(), ".jsonl"
        if not root.is_absolute() and not root.exists():  # a corpus name under $ACODM_HOME/corpus
            root = default_corpus_dir().parent / root
    if not (root / "manifest.json").exists():
        if cfg.source == "tiny":
            raise CorpusFileNotFoundError(f"tiny corpus not found at {root} (broken install?)")
        raise CorpusNotBuiltError(
            f"the bundled corpus is not built (no manifest.json in {root}); run `acodm corpus build`"
            " once (it downloads a few Debian packages), or use corpus.source=tiny"
        )
    files = {split: [str(root / f"{split}{ext}")] for split in SPLITS}
    for path in (p for paths in files.values() for p in paths):
        if not Path(path).exists():
            raise CorpusFileNotFoundError(f"corpus file missing: {path} (rebuild with --force)")
    ds = _load_local("json", files)
    train = group_by_domain(_batches(ds["train"]), "text", "domain", f"{root}/train{ext}")
    validation = group_by_domain(
        _batches(ds["validation"]), "text", "domain", f"{root}/validation{ext}"
    )
    manifest = json.loads((root / "manifest.json").read_text())
    order = [d for d in manifest.get("domains", {}) if d in train] or sorted(train)
    return train, validation, order


def _read_column_files(cfg: CorpusConfig) -> tuple[Docs, Docs | None, list[str]]:
    """Column mode: split -> files, domain from `cfg.domain_column`."""
    if cfg.source == "text":
        raise CorpusError(
            "corpus.source=text has no domain column; use corpus.domain_files (domain -> files)"
        )
    unknown = sorted(set(cfg.data_files) - set(SPLITS))
    if unknown or "train" not in cfg.data_files:
        raise CorpusError(
            f"corpus.data_files keys must be 'train' and optionally 'validation', got "
            f"{sorted(cfg.data_files)}"
        )
    files = {
        split: resolve_files(paths, f"corpus.data_files.{split}")
        for split, paths in cfg.data_files.items()
    }
    ds = _load_local(cfg.source, files)
    out = {
        split: group_by_domain(
            _batches(ds[split]), cfg.text_column, cfg.domain_column, ", ".join(files[split])
        )
        for split in files
    }
    return out["train"], out.get("validation"), sorted(out["train"])


def _read_domain_files(cfg: CorpusConfig) -> tuple[Docs, Docs | None, list[str]]:
    """File mode: every row (for "text": every file) of a domain's files is one document."""
    check_unique(list(cfg.domain_files), "corpus.domain_files")
    train: Docs = {}
    text_column = "text" if cfg.source == "text" else cfg.text_column
    for domain, paths in cfg.domain_files.items():
        files = resolve_files(paths, f"corpus.domain_files.{domain}")
        ds = _load_local(cfg.source, {"train": files})["train"]
        train[domain] = collect_texts(_batches(ds), text_column, ", ".join(files))
    return train, None, list(cfg.domain_files)


def _read_hub(cfg: CorpusConfig) -> tuple[Docs, Docs | None, list[str]]:
    """A hub dataset (the only source that downloads). Streams when max_docs_per_domain and the
    domain list are both given, so a sample of a huge corpus (The Pile) stops early."""
    if not cfg.path:
        raise CorpusError("corpus.source=hub needs corpus.path, the dataset name on the hub")
    from datasets import load_dataset

    stream = cfg.max_docs_per_domain is not None and bool(cfg.domains)
    kwargs: dict[str, Any] = {"streaming": stream}
    if cfg.data_files:
        kwargs["data_files"] = cfg.data_files
    if cfg.trust_remote_code:  # only ever passed when the user asked for it
        kwargs["trust_remote_code"] = True
    ds = load_dataset(cfg.path, **kwargs)
    if "train" not in ds:
        raise CorpusError(f"hub dataset {cfg.path!r} has no 'train' split (has {list(ds)})")
    stop = (set(cfg.domains), cfg.max_docs_per_domain) if stream else None
    out = {
        split: group_by_domain(
            _batches(ds[split]),
            cfg.text_column,
            cfg.domain_column,
            f"{cfg.path}[{split}]",
            stop_when_full=stop,
        )
        for split in SPLITS
        if split in ds
    }
    return out["train"], out.get("validation"), sorted(out["train"])


# ------------------------------------------------------------------------------- reading helpers


def resolve_files(paths: Iterable[str] | str, where: str) -> list[str]:
    """Expand globs and check every file exists, naming the missing one (datasets' own error
    would be a long traceback about data_files patterns)."""
    if isinstance(paths, str):
        paths = [paths]
    out: list[str] = []
    for raw in paths:
        path = str(Path(raw).expanduser())
        if glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise CorpusFileNotFoundError(f"{where}: no file matches {raw!r}")
            out += matches
        elif Path(path).is_file():
            out.append(path)
        else:
            raise CorpusFileNotFoundError(f"{where}: file not found: {raw}")
    if not out:
        raise CorpusError(f"{where}: empty list of files")
    return out


def _load_local(builder: str, files: dict[str, list[str]]) -> Any:
    """`datasets.load_dataset(builder, data_files=files)` for local files, cached under
    ACODM_HOME. "text" reads one document per file."""
    from datasets import load_dataset

    kwargs: dict[str, Any] = {"data_files": files, "cache_dir": str(cache_dir() / "hf_datasets")}
    if builder == "text":
        kwargs["sample_by"] = "document"
    return load_dataset(builder, **kwargs)


def _batches(ds: Any) -> Iterator[dict[str, list[Any]]]:
    """Column batches of a Dataset or IterableDataset (fast: no per-row Python dicts)."""
    yield from ds.iter(batch_size=BATCH_ROWS)


# ------------------------------------------------------------------------------- checks and splits


def check_unique(names: list[str], where: str) -> None:
    """Domain names must be unique, also ignoring case and surrounding spaces: "law" and "Law "
    in one config are a typo (mapping keys are unique by construction, near-duplicates are not)."""
    seen: dict[str, str] = {}
    dupes: list[str] = []
    for name in names:
        key = name.strip().casefold()
        if key in seen:
            dupes.append(repr(name) if seen[key] == name else f"{seen[key]!r} and {name!r}")
        seen.setdefault(key, name)
    if dupes:
        raise DuplicateDomainError(f"{where} lists domain(s) more than once: {', '.join(dupes)}")


def select_domains(available: list[str], wanted: list[str]) -> list[str]:
    """`wanted` (validated against what exists) or everything available."""
    if not wanted:
        return list(available)
    unknown = [d for d in wanted if d not in available]
    if unknown:
        raise UnknownDomainError(
            f"unknown domain(s) in corpus.domains: {', '.join(unknown)}; available domains: "
            f"{', '.join(available)}"
        )
    return list(wanted)


def split_validation(train: Docs, fraction: float) -> tuple[Docs, Docs]:
    """Deterministic per-domain split for sources without a validation split: a fixed-seed
    permutation picks max(1, round(fraction * n)) documents; both parts keep the original
    order. A domain with one document cannot be split and is reported by name."""
    if not 0.0 < fraction < 1.0:
        raise CorpusError(
            f"the corpus has no validation split, so corpus.validation_fraction must be in (0, 1), "
            f"got {fraction}"
        )
    new_train: Docs = {}
    validation: Docs = {}
    for domain, docs in train.items():
        if not docs:  # check_not_empty reports it
            new_train[domain], validation[domain] = [], []
            continue
        if len(docs) < 2:
            raise EmptyDomainError(
                f"domain {domain!r} has {len(docs)} document(s); at least 2 are needed to split off "
                "a validation set (add files/rows, or give a validation split)"
            )
        n_val = min(len(docs) - 1, max(1, round(fraction * len(docs))))
        rng = np.random.default_rng([SPLIT_SEED, len(docs)])
        is_val = np.zeros(len(docs), dtype=bool)
        is_val[rng.permutation(len(docs))[:n_val]] = True
        new_train[domain] = [d for d, v in zip(docs, is_val) if not v]
        validation[domain] = [d for d, v in zip(docs, is_val) if v]
    return new_train, validation


def check_not_empty(train: Docs, validation: Docs) -> None:
    for split, data in (("train", train), ("validation", validation)):
        for domain, docs in data.items():
            if not docs:
                raise EmptyDomainError(f"domain {domain!r} has no text in the {split} split")
