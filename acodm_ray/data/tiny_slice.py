"""The small, git-tracked corpus in `acodm_ray/assets/tiny_corpus/`, cut from a full bundled build.

    python -m acodm_ray.data.tiny_slice ~/.cache/acodm/corpus/debian-v1     # rewrites the shipped slice

The slice keeps every domain and the order of the build's skew (square-root compressed), so tests
and `configs/tiny.yaml` see the same kind of mixture as the full corpus in a few hundred kilobytes.
Its manifest records how it was cut and from which build.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from acodm_ray.data.build import (
    FORMAT_VERSION,
    TINY_DIR,
    read_jsonl,
    split_stats,
    utf8_len,
    write_corpus,
)


def read_corpus_dir(src_dir: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], dict]:
    """(train, validation, manifest) of a built corpus dir, domains in file order."""
    src_dir = Path(src_dir)
    splits: list[dict[str, list[str]]] = []
    for split in ("train", "validation"):
        path = next(
            (p for p in (src_dir / f"{split}.jsonl", src_dir / f"{split}.jsonl.gz") if p.exists()),
            None,
        )
        if path is None:
            raise FileNotFoundError(f"{src_dir} has no {split}.jsonl(.gz)")
        data: dict[str, list[str]] = {}
        for row in read_jsonl(path):
            data.setdefault(row["domain"], []).append(row["text"])
        splits.append(data)
    manifest = json.loads((src_dir / "manifest.json").read_text())
    return splits[0], splits[1], manifest


def prefix_lines(doc: str, max_bytes: int) -> str:
    """The longest run of whole leading lines of `doc` within max_bytes."""
    kept: list[str] = []
    total = 0
    for line in doc.splitlines(keepends=True):
        total += utf8_len(line)
        if total > max_bytes:
            break
        kept.append(line)
    return "".join(kept)


def take_budget(docs: list[str], budget_bytes: int, min_piece_bytes: int = 1_000) -> list[str]:
    """Documents in order while they fit the budget; a document that does not fit contributes
    its leading lines when at least min_piece_bytes of budget are left, so small budgets are
    really filled (and every domain keeps some text)."""
    kept: list[str] = []
    total = 0
    for doc in docs:
        left = budget_bytes - total
        if left < min_piece_bytes:
            break
        piece = doc if utf8_len(doc) <= left else prefix_lines(doc, left)
        if piece.strip():
            kept.append(piece)
            total += utf8_len(piece)
    return kept


def tiny_train_budget(full_bytes: int, largest_bytes: int, max_bytes: int, min_bytes: int) -> int:
    """Square-root compression of the skew: the largest domain gets max_bytes, a domain 16x
    smaller gets max_bytes / 4, and nothing gets less than min_bytes."""
    return max(min_bytes, int(max_bytes * math.sqrt(full_bytes / largest_bytes)))


def make_tiny_slice(
    src_dir: Path,
    dst_dir: Path = TINY_DIR,
    max_train_bytes: int = 120_000,
    min_train_bytes: int = 30_000,
    validation_bytes: int = 8_000,
) -> Path:
    """Cut the small slice shipped in the package from a full build (gzip'd jsonl, deterministic
    bytes). Keeps the ordering of the skew (square-root compressed) and records how it was made."""
    train, validation, src_manifest = read_corpus_dir(Path(src_dir))
    full = {d: sum(utf8_len(t) for t in docs) for d, docs in train.items()}
    largest = max(full.values())
    tiny_train = {
        d: take_budget(docs, tiny_train_budget(full[d], largest, max_train_bytes, min_train_bytes))
        for d, docs in train.items()
    }
    tiny_val = {d: take_budget(validation[d], validation_bytes) for d in train}
    manifest = {
        "name": "tiny",
        "format_version": FORMAT_VERSION,
        "made_by": "acodm_ray.data.tiny_slice.make_tiny_slice",
        "how": (
            "Cut from the bundled corpus built by build_bundled_corpus (see source below). Train: "
            "per domain, the build's documents in its shuffled order within a byte budget of "
            f"max({min_train_bytes}, {max_train_bytes} * sqrt(domain_bytes / largest_domain_bytes))"
            f"; validation: {validation_bytes} bytes of the build's validation documents. A document "
            "that does not fit the rest of a budget contributes its leading lines (cut at a line "
            "boundary) when at least 1000 bytes are left."
        ),
        "params": {
            "max_train_bytes": max_train_bytes,
            "min_train_bytes": min_train_bytes,
            "validation_bytes": validation_bytes,
        },
        "source": {k: src_manifest.get(k) for k in ("name", "format_version", "seed", "packages")},
        "domains": {
            d: {
                "description": src_manifest.get("domains", {}).get(d, {}).get("description"),
                "train": split_stats(tiny_train[d]),
                "validation": split_stats(tiny_val[d]),
            }
            for d in train
        },
    }
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    write_corpus(dst_dir, tiny_train, tiny_val, manifest, gz=True)
    return dst_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "src", type=Path, help="a built corpus dir (python -m acodm_ray.data.build)"
    )
    parser.add_argument("--out", type=Path, default=TINY_DIR)
    args = parser.parse_args(argv)
    print(make_tiny_slice(args.src, args.out))


if __name__ == "__main__":
    main()
