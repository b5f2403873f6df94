"""What a corpus config reads: `plan_source(cfg)` turns `CorpusConfig` into a `SourcePlan` (the
ordered inputs, which column or file names each document's domain and split, and a fingerprint),
checking everything that can be checked before any data is read.

Two ways to say which domain a document belongs to:
  - column mode (`data_files`: split -> files, also the bundled and tiny corpora): a column names
    the domain, dotted for nested fields (`meta.pile_set_name` for The Pile);
  - file mode (`domain_files`: domain -> files): every row of a domain's files belongs to it. For
    source "text" one FILE is one document, so code files and chapters stay whole.
A source without a validation split is split by document when it is prepared
(`acodm_ray.data.router`). Domain order: `corpus.domains` when given, else the bundled or tiny
corpus's manifest order (largest first), the order of `domain_files`, or sorted names in column mode.

Inputs are read in order (train files, then validation files), and each input is the unit an
interrupted prepare resumes from.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from acodm_ray.config import CorpusConfig
from acodm_ray.config_data import Source
from acodm_ray.data.build import TINY_DIR, default_corpus_dir
from acodm_ray.data.corpus_errors import (
    CorpusError,
    CorpusFileNotFoundError,
    CorpusNotBuiltError,
    DuplicateDomainError,
    UnknownDomainError,
    UnknownSourceError,
)
from acodm_ray.data.derived import derived_kind

SOURCES = get_args(Source)
FILE_SOURCES = ("json", "parquet", "text", "csv")
SPLITS = ("train", "validation")
FORMAT_OF = {"bundled": "json", "tiny": "json"}  # what the packaged corpora are stored as


@dataclass
class SourceInput:
    """One file (or, for the hub, one split of a dataset) and what it says about its rows."""

    path: str
    split: str | None  # None: the source has no split of its own; the router splits it
    domain: str | None = None  # file mode: every row's domain


@dataclass
class SourcePlan:
    format: str  # json | parquet | csv | text | hub
    inputs: list[SourceInput]
    text_column: str
    domain_column: str | None  # None in file mode
    domain_order: list[str] | None  # known before reading; None: sorted names, known at the end
    spec: dict[str, Any]  # the config fields that say what the corpus is (compared at train time)
    files: list[dict[str, Any]] = field(
        default_factory=list
    )  # path, bytes, mtime_ns of local inputs
    hub: dict[str, Any] = field(default_factory=dict)  # name, data_files, trust_remote_code

    @property
    def fingerprint(self) -> str:
        """sha256 of the spec and the input files' sizes and modification times: a changed file
        gives a new default prepared directory, as the token cache did."""
        blob = json.dumps({"spec": self.spec, "files": self.files}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def is_split(self) -> bool:
        """Whether the source says which split each document is in (else the router decides)."""
        return all(i.split is not None for i in self.inputs)

    def phases(self) -> list[tuple[int, int]]:
        """[start, stop) ranges of `inputs` with the same split: each is read as one dataset."""
        out, start = [], 0
        for i in range(1, len(self.inputs) + 1):
            if i == len(self.inputs) or self.inputs[i].split != self.inputs[start].split:
                out.append((start, i))
                start = i
        return out

    def describe(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "spec": self.spec, "files": self.files}


def source_spec(cfg: CorpusConfig) -> dict[str, Any]:
    """The config fields that define the corpus's content (not where its shards are written)."""
    spec = asdict(cfg)
    for key in ("prepared", "trust_remote_code"):
        spec.pop(key, None)
    return spec


# ------------------------------------------------------------------------------- planning


def plan_source(cfg: CorpusConfig) -> SourcePlan:
    """Resolve `cfg` into ordered inputs; raise a `CorpusError` naming any problem found without
    reading the data (unknown source, missing files, both or neither of the file modes, ...)."""
    if cfg.source not in SOURCES:
        raise UnknownSourceError(
            f"unknown corpus.source {cfg.source!r}; choose one of {', '.join(SOURCES)}"
        )
    check_unique(cfg.domains, "corpus.domains")
    if cfg.max_docs_per_domain is not None and cfg.max_docs_per_domain < 1:
        raise CorpusError(f"corpus.max_docs_per_domain must be >= 1, got {cfg.max_docs_per_domain}")
    if cfg.max_tokens_per_domain is not None and cfg.max_tokens_per_domain < 1:
        raise CorpusError(
            f"corpus.max_tokens_per_domain must be >= 1, got {cfg.max_tokens_per_domain}"
        )
    if cfg.source in ("bundled", "tiny"):
        plan = _plan_packaged(cfg)
    elif cfg.source == "hub":
        plan = _plan_hub(cfg)
    elif cfg.data_files and cfg.domain_files:
        raise CorpusError(
            "give corpus.data_files (column mode) or corpus.domain_files (file mode), not both"
        )
    elif cfg.domain_files:
        plan = _plan_domain_files(cfg)
    elif cfg.data_files:
        plan = _plan_column_files(cfg)
    else:
        raise CorpusError(
            f"corpus.source={cfg.source!r} needs corpus.data_files (split -> files, domain from "
            f"corpus.domain_column) or corpus.domain_files (domain -> files)"
        )
    if not plan.is_split and not 0.0 < cfg.validation_fraction < 1.0:
        raise CorpusError(
            f"the corpus has no validation split, so corpus.validation_fraction must be in (0, 1), "
            f"got {cfg.validation_fraction}"
        )
    if cfg.domains:
        unknown = [
            d for d in cfg.domains if plan.domain_order is not None and d not in plan.domain_order
        ]
        if unknown:
            raise UnknownDomainError(
                f"unknown domain(s) in corpus.domains: {', '.join(unknown)}; available domains: "
                f"{', '.join(plan.domain_order or [])}"
            )
        plan.domain_order = list(cfg.domains)
    plan.files = [file_stats(i.path) for i in plan.inputs if plan.format != "hub"]
    return plan


def _plan_packaged(cfg: CorpusConfig) -> SourcePlan:
    """The bundled corpus (built once by `acodm corpus build`) or the tiny slice shipped in the
    package: jsonl with "text" and "domain" columns, train and validation files, a manifest."""
    if cfg.source == "tiny":
        root, ext = (Path(cfg.path) if cfg.path else TINY_DIR), ".jsonl.gz"
    else:
        root, ext = (Path(cfg.path).expanduser() if cfg.path else default_corpus_dir()), ".jsonl"
        if not root.is_absolute() and not root.exists():  # a corpus name under $ACODM_HOME/corpus
            root = default_corpus_dir().parent / root
    if not (root / "manifest.json").exists():
        if cfg.source == "tiny":
            raise CorpusFileNotFoundError(f"tiny corpus not found at {root} (broken install?)")
        if kind := derived_kind(root):
            raise CorpusNotBuiltError(
                f"the derived corpus {root.name} is not written (no manifest.json in {root}); run "
                f"`acodm corpus derive {kind}` (offline, seconds; after `acodm corpus build`)"
            )
        raise CorpusNotBuiltError(
            f"the bundled corpus is not built (no manifest.json in {root}); run `acodm corpus build`"
            " once (it downloads a few Debian packages), or use corpus.source=tiny"
        )
    inputs = []
    for split in SPLITS:
        path = root / f"{split}{ext}"
        if not path.exists():
            raise CorpusFileNotFoundError(f"corpus file missing: {path} (rebuild with --force)")
        inputs.append(SourceInput(str(path.resolve()), split))
    manifest = json.loads((root / "manifest.json").read_text())
    return SourcePlan(
        "json",
        inputs,
        "text",
        "domain",
        list(manifest.get("domains", {})) or None,
        source_spec(cfg),
    )


def _plan_column_files(cfg: CorpusConfig) -> SourcePlan:
    """Column mode: split -> files, domain from `cfg.domain_column`."""
    if cfg.source == "text":
        raise CorpusError(
            "corpus.source=text has no domain column; use corpus.domain_files (domain -> files)"
        )
    unknown = sorted(set(cfg.data_files) - set(SPLITS))
    if unknown or "train" not in cfg.data_files:
        raise CorpusError(
            f"corpus.data_files keys must be 'train' and optionally 'validation', got {sorted(cfg.data_files)}"
        )
    has_validation = "validation" in cfg.data_files
    inputs = [
        SourceInput(path, split if has_validation else None)
        for split in SPLITS
        if split in cfg.data_files
        for path in resolve_files(cfg.data_files[split], f"corpus.data_files.{split}")
    ]
    check_no_repeats(inputs)
    return SourcePlan(
        cfg.source, inputs, cfg.text_column, cfg.domain_column, None, source_spec(cfg)
    )


def _plan_domain_files(cfg: CorpusConfig) -> SourcePlan:
    """File mode: every row (for "text": every file) of a domain's files is one document."""
    check_unique(list(cfg.domain_files), "corpus.domain_files")
    inputs = [
        SourceInput(path, None, domain)
        for domain, paths in cfg.domain_files.items()
        for path in resolve_files(paths, f"corpus.domain_files.{domain}")
    ]
    check_no_repeats(inputs)
    text_column = "text" if cfg.source == "text" else cfg.text_column
    return SourcePlan(
        cfg.source, inputs, text_column, None, list(cfg.domain_files), source_spec(cfg)
    )


def _plan_hub(cfg: CorpusConfig) -> SourcePlan:
    """A dataset on the Hugging Face hub (or any `datasets` builder, e.g. "json" with local
    data_files), read in streaming mode: nothing is downloaded beyond what is read, and reading
    stops at `max_tokens_per_domain` / `max_docs_per_domain` once every named domain is full."""
    if not cfg.path:
        raise CorpusError("corpus.source=hub needs corpus.path, the dataset name on the hub")
    hub = {
        "name": cfg.path,
        "data_files": cfg.data_files or None,
        "trust_remote_code": cfg.trust_remote_code,
    }
    splits = hub_splits(hub)
    if "train" not in splits:
        raise CorpusError(f"hub dataset {cfg.path!r} has no 'train' split (has {splits})")
    has_validation = "validation" in splits
    inputs = [SourceInput(cfg.path, s if has_validation else None) for s in SPLITS if s in splits]
    return SourcePlan(
        "hub", inputs, cfg.text_column, cfg.domain_column, None, source_spec(cfg), hub=hub
    )


def hub_splits(hub: dict[str, Any]) -> list[str]:
    """The split names of a streamed `datasets` dataset (its metadata only, no rows)."""
    from datasets import load_dataset  # lazy: slow to import, and only the hub source needs it

    kwargs: dict[str, Any] = {"streaming": True}
    if hub.get("data_files"):
        kwargs["data_files"] = hub["data_files"]
    if hub.get("trust_remote_code"):  # only ever passed when the user asked for it
        kwargs["trust_remote_code"] = True
    return list(load_dataset(hub["name"], **kwargs))


# ------------------------------------------------------------------------------- checks


def resolve_files(paths: list[str] | str, where: str) -> list[str]:
    """Expand globs (sorted) and check every file exists, naming the missing one."""
    if isinstance(paths, str):
        paths = [paths]
    out: list[str] = []
    for raw in paths:
        path = str(Path(raw).expanduser())
        if glob.has_magic(path):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise CorpusFileNotFoundError(f"{where}: no file matches {raw!r}")
            out += [str(Path(m).resolve()) for m in matches]
        elif Path(path).is_file():
            out.append(str(Path(path).resolve()))
        else:
            raise CorpusFileNotFoundError(f"{where}: file not found: {raw}")
    if not out:
        raise CorpusError(f"{where}: empty list of files")
    return out


def check_no_repeats(inputs: list[SourceInput]) -> None:
    """A file named twice (two splits, two domains) would be read twice: refuse it."""
    seen: dict[str, SourceInput] = {}
    for item in inputs:
        if item.path in seen:
            raise CorpusError(
                f"{item.path} is listed twice in the corpus config (a file belongs to one split/domain)"
            )
        seen[item.path] = item


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


def file_stats(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": path, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
