"""Where a prepared corpus lives, and how every process opens it.

`corpus.prepared` names the directory: a local path (also a shared file system every node mounts,
the usual way on a cluster) or any `pyarrow.fs` URI (`s3://...`, `gs://...`). Left empty, it is a
directory under `$ACODM_HOME/prepared/` keyed by the source's fingerprint and the tokenizer's
settings, prepared automatically on first use, as the token cache used to be.

A local directory is memory-mapped where it is. A URI is copied once per node into
`$ACODM_HOME/prepared-cache/` (each shard's sha256 checked on the way, the first bad one named),
then memory-mapped from there. A prepare whose output is a URI writes into a local staging
directory and uploads it at the end, manifest last, so a reader never sees half a corpus.

Opening checks the cheap things every time (the manifest, each shard's size) and refuses a
directory prepared from another source, another domain list or another tokenizer, naming both.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from acodm_ray.config import ExperimentConfig, cache_dir
from acodm_ray.data.manifest import (
    MANIFEST,
    TOKENIZER_DIR,
    Manifest,
    PreparedCorpusError,
    check_sizes,
    file_sha256,
    read_manifest,
    summary_lines,
)
from acodm_ray.data.sources import SourcePlan, plan_source, source_spec

PREPARED_FORMAT = 1


def is_remote(location: str) -> bool:
    """A URI with a scheme other than file:// (local paths and file:// URIs are read in place)."""
    return "://" in location and not location.startswith("file://")


def local_path(location: str) -> Path:
    return Path(
        location[len("file://") :] if location.startswith("file://") else location
    ).expanduser()


def default_location(cfg: ExperimentConfig, plan: SourcePlan) -> str:
    """$ACODM_HOME/prepared/<source>-<key>: one directory per source content and tokenizer."""
    from acodm_ray.data.tokenizer_pass import tokenizer_key  # lazy: it imports Ray Data

    key = json.dumps(
        {
            "format": PREPARED_FORMAT,
            "plan": plan.fingerprint,
            "tokenizer": tokenizer_key(cfg, plan),
            "shard_tokens": cfg.prepare.shard_tokens,
        },
        sort_keys=True,
    )
    return str(
        cache_dir()
        / "prepared"
        / f"{cfg.corpus.source}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    )


def staging_dir(location: str) -> Path:
    """Where a prepare writes: the directory itself when local, else a local staging copy."""
    if not is_remote(location):
        return local_path(location)
    return cache_dir() / "prepare-staging" / hashlib.sha256(location.encode()).hexdigest()[:16]


@contextmanager
def locked(path: Path):
    """An exclusive lock on `path`.lock: one process (or driver thread) prepares or downloads a
    directory at a time; the others wait, then find it done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------- preparing


def ensure_prepared(cfg: ExperimentConfig, progress: bool = True, force: bool = False) -> str:
    """The location of `cfg`'s prepared corpus, preparing it first if it is not there (or when
    `force`: the old directory is removed first, only then)."""
    location = cfg.corpus.prepared
    if location and not force and manifest_exists(location):
        return location
    plan = plan_source(cfg.corpus)
    location = location or default_location(cfg, plan)
    root = staging_dir(location)
    with locked(root):
        if force:
            shutil.rmtree(root, ignore_errors=True)
        elif manifest_exists(location):
            return location
        from acodm_ray.data.prepare import prepare_into  # lazy: pulls in Ray Data

        prepare_into(cfg, plan, root, progress=progress)
        if is_remote(location):
            upload(root, location)
    return location


def prepare_and_report(cfg: ExperimentConfig, force: bool = False) -> list[str]:
    """`acodm corpus prepare` and jobs/prepare_corpus.py: prepare (or find) the corpus, then a
    table of what it holds and where it is."""
    start = time.perf_counter()
    location = ensure_prepared(cfg, force=force)
    _, manifest = open_location(location)
    seconds = time.perf_counter() - start
    return [*summary_lines(manifest), f"prepared corpus: {location} ({seconds:.1f} s); train from it "
            f"with --set corpus.prepared={location} (or keep the same corpus config)"]  # fmt: skip


def manifest_exists(location: str) -> bool:
    if not is_remote(location):
        return (local_path(location) / MANIFEST).exists()
    fs, path = pafs.FileSystem.from_uri(location)
    return fs.get_file_info(f"{path}/{MANIFEST}").type == pafs.FileType.File


def upload(root: Path, location: str) -> None:
    """Copy a finished local directory to a URI, the manifest last."""
    fs, base = pafs.FileSystem.from_uri(location)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".lock")
    )
    for path in [*files, root / MANIFEST]:
        rel = path.relative_to(root).as_posix()
        fs.create_dir(f"{base}/{rel}".rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(path), f"{base}/{rel}", destination_filesystem=fs)


# ------------------------------------------------------------------------------- opening


def open_location(location: str) -> tuple[Path, Manifest]:
    """A local directory holding the prepared corpus at `location` (downloaded first if remote),
    and its manifest, with every shard present at its size."""
    root = local_path(location) if not is_remote(location) else download(location)
    manifest = read_manifest(root)
    check_sizes(root, manifest)
    return root, manifest


def download(location: str) -> Path:
    """The node-local copy of a remote prepared corpus, checked shard by shard on the way."""
    fs, base = pafs.FileSystem.from_uri(location)
    root = cache_dir() / "prepared-cache" / hashlib.sha256(location.encode()).hexdigest()[:16]
    with locked(root):
        try:
            with fs.open_input_stream(f"{base}/{MANIFEST}") as f:
                remote = f.read().decode()
        except FileNotFoundError as err:
            raise PreparedCorpusError(
                f"no prepared corpus at {location}: {MANIFEST} is missing"
            ) from err
        if (root / MANIFEST).exists() and (root / MANIFEST).read_text() == remote:
            return root
        manifest = Manifest.from_json(remote, f"{location}/{MANIFEST}")
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        selector = pafs.FileSelector(f"{base}/{TOKENIZER_DIR}", recursive=True)
        names = [
            info.path[len(base) + 1 :]
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]
        for rel in [*names, *(s.file for s in manifest.shards)]:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            pafs.copy_files(f"{base}/{rel}", str(tmp / rel), source_filesystem=fs)
        for shard in manifest.shards:
            if file_sha256(tmp / shard.file) != shard.sha256:
                raise PreparedCorpusError(
                    f"shard {location}/{shard.file} ({shard.domain!r}, {shard.split}) fails its checksum "
                    "after download: the stored copy is corrupt; prepare the corpus again"
                )
        (tmp / MANIFEST).write_text(remote)
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    return root


def check_matches(manifest: Manifest, cfg: ExperimentConfig, location: str) -> None:
    """Refuse a prepared corpus made from another source, domain list or tokenizer."""
    made_from, wanted = manifest.source.get("spec", {}), source_spec(cfg.corpus)
    differ = {
        k: (made_from.get(k), wanted.get(k))
        for k in sorted(set(made_from) | set(wanted))
        if made_from.get(k) != wanted.get(k)
    }
    if differ:
        lines = "; ".join(
            f"corpus.{k}: prepared {a!r}, this config {b!r}" for k, (a, b) in differ.items()
        )
        raise PreparedCorpusError(f"{location} was prepared from another corpus ({lines})")
    if cfg.corpus.domains and list(cfg.corpus.domains) != manifest.domains:
        raise PreparedCorpusError(
            f"{location} holds domains {manifest.domains}; this config asks for {list(cfg.corpus.domains)}"
        )
    made_with = manifest.made_by.get("tokenizer", {}).get("key", {})
    wants = tokenizer_request(cfg)
    if any(made_with.get(k) != v for k, v in wants.items()):
        raise PreparedCorpusError(
            f"{location} was prepared with tokenizer {made_with}; this config asks for {wants}"
        )


def tokenizer_request(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config's tokenizer settings, as a prepared corpus's tokenizer key records them."""
    t = cfg.tokenizer
    if t.path:
        return {"path": t.path}
    return {
        "train": {"vocab_size": t.vocab_size, "max_chars_per_domain": t.train_max_chars_per_domain}
    }
