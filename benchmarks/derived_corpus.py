"""Two corpus settings derived from the bundled corpus, for the mixing benchmark (BENCHMARKS.md):

- `decoys`: the bundled corpus plus two domains a mixer should learn to avoid, with known answers:
  `noise` (documents of words drawn uniformly from the corpus's own words: real subwords, no
  structure, nothing to learn) and `repeated` (one short passage repeated over and over: learnt in
  a few steps, then a waste). Configs evaluate on the real domains only (`train.eval_domains`).
- `merged`: the bundled corpus with K = 4 instead of 7, by merging domains of a kind (code =
  python_code + c_headers, prose = literature + dictionary, docs = manuals + latex, legal), so a
  default tuned to one K shows itself on another.

Each is written in the bundled corpus's format under $ACODM_HOME/corpus/<name>, read with
`corpus.source: bundled` and `corpus.path: <name>`.

    python benchmarks/derived_corpus.py decoys
    python benchmarks/derived_corpus.py merged
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from acodm_ray.data.build import default_corpus_dir

MERGES = {"code": ["python_code", "c_headers"], "prose": ["literature", "dictionary"],
          "docs": ["manuals", "latex"], "legal": ["legal"]}
DECOY_DOCS = {"train": 400, "validation": 8}  # documents per decoy domain and split
DOC_WORDS = 400


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_corpus(out: Path, splits: dict[str, list[dict]], manifest: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def decoy_rows(rows: list[dict], split: str, rng: np.random.Generator) -> list[dict]:
    words = sorted({w for r in rows for w in r["text"].split()})
    passage = "The quick brown fox jumps over the lazy dog while the band plays on. "
    n = DECOY_DOCS[split]
    noise = [{"text": " ".join(rng.choice(words, size=DOC_WORDS)), "domain": "noise"} for _ in range(n)]
    repeated = [{"text": passage * 30, "domain": "repeated"} for _ in range(n)]
    return noise + repeated


def derive(kind: str, seed: int = 0) -> Path:
    src = default_corpus_dir()
    if not (src / "manifest.json").is_file():
        sys.exit(f"the bundled corpus is not built at {src}: run `acodm corpus build` first")
    manifest = json.loads((src / "manifest.json").read_text())
    rng = np.random.default_rng(seed)
    splits = {split: read_rows(src / f"{split}.jsonl") for split in ("train", "validation")}
    if kind == "decoys":
        out_splits = {split: rows + decoy_rows(rows, split, rng) for split, rows in splits.items()}
        domains = {**manifest["domains"], "noise": {"description": "uniformly drawn corpus words (decoy)"},
                   "repeated": {"description": "one short passage repeated (decoy)"}}
    elif kind == "merged":
        owner = {d: new for new, olds in MERGES.items() for d in olds}
        out_splits = {split: [{**r, "domain": owner[r["domain"]]} for r in rows] for split, rows in splits.items()}
        domains = {new: {"description": " + ".join(olds)} for new, olds in MERGES.items()}
    else:
        raise SystemExit(f"unknown kind {kind!r}; choose decoys or merged")
    name = f"{src.name}-{kind}"
    return write_corpus(src.parent / name, out_splits,
                        {"name": name, "derived_from": str(src), "kind": kind, "seed": seed, "domains": domains})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["decoys", "merged"])
    args = parser.parse_args(argv)
    out = derive(args.kind)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
