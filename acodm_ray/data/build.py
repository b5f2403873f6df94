"""Build the bundled offline corpus: real text, written by others, from Debian packages.

The Pile is out of reach offline, so the default corpus imitates its *shape* instead: several
clearly different domains (code, headers, law, manuals, dictionary, scripture, LaTeX) with skewed
natural proportions (the largest domain ~20x the smallest). Every byte comes from a Debian package
fetched by name with `apt-get download` and unpacked with `dpkg-deb -x` into a temp dir (nothing is
installed), so the corpus is reproducible from the manifest's package versions and sha256 sums.

The domains themselves (packages, budgets, extractors) are `acodm_ray/data/debian_domains.py`;
this module fetches them, cleans, samples and splits the documents, and writes the corpus.

Output (`build_bundled_corpus`):
    <out_dir>/train.jsonl, <out_dir>/validation.jsonl   one {"text": ..., "domain": ...} per line
    <out_dir>/manifest.json                             packages, versions, sha256, sizes, seed

`acodm_ray/data/tiny_slice.py` cuts the small, git-tracked slice in `acodm_ray/assets/tiny_corpus/` from it.
The pure text functions (`acodm_ray/data/formats.py`: `roff_to_text`, `split_dictd`, `lzw_decompress`,
`read_brs_text`, `split_bible_chapters`, `split_long_text`) are tested on inline samples; the build itself runs in
tests on a restricted domain set (`domains=`), with empty apt lists so the refresh path runs too.

Stale or missing apt lists (most container images delete `/var/lib/apt/lists`) are refreshed by
the build itself (`acodm_ray/data/apt.py`): when a package has no downloadable candidate or its download fails, it runs
`apt-get update` once (as root; otherwise it stops with the command to run) and retries.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from acodm_ray.config import cache_dir
from acodm_ray.data.apt import (
    AptLists,
    CorpusBuildError,
    DebPackage,
    download_package,
    host_release,
    log,
    pick_python_version,
    require_tools,
    unpack_package,
)
from acodm_ray.data.debian_domains import MB, DomainSpec, Roots, domain_specs
from acodm_ray.data.formats import MAX_DOC_CHARS, split_long_text

FORMAT_VERSION = 1
CORPUS_NAME = "debian-v1"
BUILD_SEED = 0
VALIDATION_FRACTION = 0.03
MAX_VALIDATION_BYTES = 100_000
TINY_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny_corpus"


def default_corpus_dir() -> Path:
    """Where `acodm corpus build` puts the bundled corpus and `source: bundled` looks for it."""
    return cache_dir() / "corpus" / CORPUS_NAME


# ------------------------------------------------------------------------------- sampling


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def clean_documents(docs: Iterable[str], max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Drop empty and duplicate documents, cut long ones: the shared post-processing of every
    domain (duplicates would leak between train and validation)."""
    seen: set[str] = set()
    out: list[str] = []
    for doc in docs:
        for piece in split_long_text(doc.strip("\n") + "\n", max_chars):
            key = hashlib.sha1(piece.encode("utf-8")).hexdigest()
            if piece.strip() and key not in seen:
                seen.add(key)
                out.append(piece)
    return out


def shuffle_and_cap(docs: list[str], budget_bytes: int, seed: str) -> list[str]:
    """Deterministic shuffle (seeded by build seed and domain), then the longest prefix that fits
    in the budget: the cap samples the whole domain instead of its first files."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    kept: list[str] = []
    total = 0
    for doc in docs:
        size = utf8_len(doc)
        if total + size > budget_bytes:
            break
        kept.append(doc)
        total += size
    return kept


def split_train_validation(
    docs: list[str], fraction: float = VALIDATION_FRACTION, max_bytes: int = MAX_VALIDATION_BYTES
) -> tuple[list[str], list[str]]:
    """Leading (already shuffled) documents to validation until they hold ~fraction of the
    domain's bytes, capped at max_bytes; at least one document, never all of them. Counting bytes
    rather than documents keeps small domains with a few long files (legal) from ending up with
    a validation set of a few hundred tokens."""
    if len(docs) < 2:
        raise CorpusBuildError(f"need at least 2 documents to split, got {len(docs)}")
    target = min(max_bytes, fraction * sum(utf8_len(d) for d in docs))
    val: list[str] = []
    size = 0
    for doc in docs[:-1]:
        if size >= target or (val and size + utf8_len(doc) > max_bytes):
            break
        val.append(doc)
        size += utf8_len(doc)
    return docs[len(val) :], val


def write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """One JSON object per line; .gz paths are gzip'd with a zero timestamp so a rebuild gives
    identical bytes (the tiny slice is git-tracked)."""
    with open(path, "wb") as raw:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            if path.name.endswith(".gz")
            else raw
        ) as f:
            for row in rows:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def read_jsonl(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def split_stats(docs: list[str]) -> dict[str, int]:
    return {"bytes": sum(utf8_len(d) for d in docs), "docs": len(docs)}


def write_corpus(
    out: Path,
    train: dict[str, list[str]],
    validation: dict[str, list[str]],
    manifest: dict,
    gz: bool = False,
) -> None:
    """train/validation jsonl (grouped by domain, domain order kept) and manifest.json."""
    ext = ".jsonl.gz" if gz else ".jsonl"
    for split, data in (("train", train), ("validation", validation)):
        write_jsonl(
            out / f"{split}{ext}",
            ({"text": t, "domain": d} for d, docs in data.items() for t in docs),
        )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def publish_atomically(tmp: Path, out_dir: Path) -> None:
    """Move a finished build into place; a reader sees either nothing or a complete corpus."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------- the build


def select_domains(specs: list[DomainSpec], domains: Iterable[str] | None) -> list[DomainSpec]:
    """The specs named in `domains` (all when None), refusing unknown names."""
    if domains is None:
        return specs
    wanted = list(domains)
    known = [s.name for s in specs]
    unknown = [d for d in wanted if d not in known]
    if unknown or not wanted:
        raise CorpusBuildError(
            f"unknown corpus domain(s) {unknown or wanted}; the domains are {known}"
        )
    return [s for s in specs if s.name in wanted]


def build_bundled_corpus(
    out_dir: Path | None = None, force: bool = False, domains: Iterable[str] | None = None
) -> Path:
    """Download the Debian packages, extract seven domains, write the corpus; return its dir.

    Idempotent (an existing manifest means done unless force) and atomic (built in a sibling temp
    dir, renamed into place at the end). `domains` builds only those (a partial corpus, for tests
    and quick checks); it needs an explicit `out_dir`, so the default corpus is always complete."""
    if domains is not None and out_dir is None:
        raise CorpusBuildError(
            "a partial corpus (--domains) needs an explicit output directory (--out)"
        )
    out_dir = Path(out_dir) if out_dir is not None else default_corpus_dir()
    if (out_dir / "manifest.json").exists() and not force:
        log(f"already built: {out_dir}")
        return out_dir
    require_tools()
    start = time.time()
    apt = AptLists()
    wanted = None if domains is None else list(domains)
    needs_python = wanted is None or "python_code" in wanted
    specs = select_domains(
        domain_specs(pick_python_version(apt=apt) if needs_python else "3.11"), wanted
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    tmp_out.chmod(0o755)  # mkdtemp makes it private; the corpus is shared data
    try:
        with tempfile.TemporaryDirectory(prefix="acodm-debs-") as work:
            manifest = _build_into(tmp_out, Path(work), specs, apt)
        manifest["build_seconds"] = round(time.time() - start, 1)
        (tmp_out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if (out_dir / "manifest.json").exists() and not force:
            log("another build finished first; keeping it")
            shutil.rmtree(tmp_out, ignore_errors=True)
        else:
            publish_atomically(tmp_out, out_dir)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    log(f"done in {time.time() - start:.0f}s: {out_dir}")
    return out_dir


def _build_into(
    out: Path, work: Path, specs: list[DomainSpec], apt: AptLists | None = None
) -> dict:
    """Fetch the packages into `work`, build every domain, write the corpus into `out`; returns its
    manifest."""
    debs, roots = _fetch_packages(specs, work, apt)
    train: dict[str, list[str]] = {}
    validation: dict[str, list[str]] = {}
    domains: dict[str, dict] = {}
    for spec in specs:
        train[spec.name], validation[spec.name], domains[spec.name] = _build_domain(spec, roots)
    manifest = _manifest(domains, debs, apt)
    write_corpus(out, train, validation, manifest)
    return manifest


def _fetch_packages(
    specs: list[DomainSpec], work: Path, apt: AptLists | None
) -> tuple[dict[str, DebPackage], Roots]:
    """Every package the specs name, downloaded and unpacked under `work` (nothing is installed)."""
    debs_dir, roots_dir = work / "debs", work / "roots"
    debs_dir.mkdir()
    debs: dict[str, DebPackage] = {}
    roots: Roots = {}
    for name in sorted({p for s in specs for p in s.packages}):
        log(f"downloading {name} ...")
        deb = download_package(name, debs_dir, apt)
        log(f"  {deb.name} {deb.version}: {deb.size / MB:.1f} MB; unpacking")
        debs[name] = deb
        roots[name] = unpack_package(deb, roots_dir)
    return debs, roots


def _build_domain(spec: DomainSpec, roots: Roots) -> tuple[list[str], list[str], dict]:
    """One domain's (train, validation) documents and its manifest entry: extracted, cleaned,
    shuffled and capped at its byte budget, then split."""
    docs = clean_documents(spec.extract(roots, spec.packages))
    available = split_stats(docs)
    if available["docs"] < 2:
        raise CorpusBuildError(
            f"domain {spec.name!r} got {available['docs']} documents from {spec.packages}"
        )
    kept = shuffle_and_cap(docs, spec.budget_bytes, f"{BUILD_SEED}:{spec.name}")
    train, validation = split_train_validation(kept)
    entry = {
        "description": spec.description,
        "packages": list(spec.packages),
        "budget_bytes": spec.budget_bytes,
        "available": available,
        "train": split_stats(train),
        "validation": split_stats(validation),
    }
    log(
        f"{spec.name}: {available['bytes'] / MB:.2f} MB available in {available['docs']} docs;"
        f" kept {entry['train']['bytes'] / MB:.2f} MB train"
        f" ({entry['train']['docs']} docs),"
        f" {entry['validation']['bytes'] / 1000:.0f} KB validation"
    )
    return train, validation, entry


def _manifest(domains: dict[str, dict], debs: dict[str, DebPackage], apt: AptLists | None) -> dict:
    """manifest.json: how the corpus was made (seed, limits, apt host) and from which exact packages."""
    return {
        "name": CORPUS_NAME,
        "format_version": FORMAT_VERSION,
        "seed": BUILD_SEED,
        "built_by": "acodm_ray.data.build.build_bundled_corpus",
        "max_doc_chars": MAX_DOC_CHARS,
        "validation_fraction": VALIDATION_FRACTION,
        "max_validation_bytes": MAX_VALIDATION_BYTES,
        "apt_host": host_release(),
        "apt_lists_refreshed": bool(apt and apt.refreshed),
        "domains": domains,
        "packages": [
            {
                "name": d.name,
                "version": d.version,
                "sha256": d.sha256,
                "size": d.size,
                "file": d.path.name,
            }
            for d in debs.values()
        ],
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m acodm_ray.data.build [--force] [--out DIR]` (the tiny slice: acodm_ray/data/tiny_slice.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    print(build_bundled_corpus(args.out, force=args.force))


if __name__ == "__main__":
    main()
