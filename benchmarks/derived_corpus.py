"""Corpus settings derived from the bundled corpus, for the mixing benchmark (BENCHMARKS.md):

- `decoys`: the bundled corpus plus two domains a mixer should learn to avoid, with known answers:
  `noise` (documents of words drawn uniformly from the corpus's own words: real subwords, no
  structure, nothing to learn) and `repeated` (one short passage repeated over and over: learnt in
  a few steps, then a waste). Configs evaluate on the real domains only (`train.eval_domains`).
- `swamped`: the bundled corpus plus as many decoys as real domains (noise1-4, repeated1-3, made
  like the two above): uniform spends half its tokens on them, so the known answer (nothing on the
  decoys) has more to gain over uniform than in `decoys`, where it is worth less than seed noise.
- `merged`: the bundled corpus with K = 4 instead of 7, by merging domains of a kind (code =
  python_code + c_headers, prose = literature + dictionary, docs = manuals + latex, legal), so a
  default tuned to one K shows itself on another.

Each is written in the bundled corpus's format under $ACODM_HOME/corpus/<name>, read with
`corpus.source: bundled` and `corpus.path: <name>`.

    python benchmarks/derived_corpus.py decoys
    python benchmarks/derived_corpus.py swamped
    python benchmarks/derived_corpus.py merged
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from acodm_ray.data.build import default_corpus_dir

KINDS = ("decoys", "swamped", "merged")
MERGES = {
    "code": ["python_code", "c_headers"],
    "prose": ["literature", "dictionary"],
    "docs": ["manuals", "latex"],
    "legal": ["legal"],
}
DECOY_DOCS = {"train": 400, "validation": 8}  # documents per decoy domain and split
DOC_WORDS = 400
PASSAGES = (
    "The quick brown fox jumps over the lazy dog while the band plays on. ",
    "A stitch in time saves nine, but only if the thread holds and the needle is sharp. ",
    "Every morning the train left at seven and every evening it came back empty. ",
)
SWAMPED_NOISE = (
    4  # + len(PASSAGES) repeated decoys = 7, as many as the bundled corpus's real domains
)
SWAMPED_DECOYS = [f"noise{i + 1}" for i in range(SWAMPED_NOISE)] + [
    f"repeated{i + 1}" for i in range(len(PASSAGES))
]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_corpus(out: Path, splits: dict[str, list[dict]], manifest: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def corpus_words(rows: list[dict]) -> np.ndarray:
    """The distinct words of `rows`, sorted, as one array (`rng.choice` on a list converts it per draw)."""
    return np.array(sorted({w for r in rows for w in r["text"].split()}))


def noise_docs(words: np.ndarray, n: int, rng: np.random.Generator, domain: str) -> list[dict]:
    """n documents of DOC_WORDS words drawn uniformly from `words`: real subwords, no structure."""
    return [
        {"text": " ".join(rng.choice(words, size=DOC_WORDS)), "domain": domain} for _ in range(n)
    ]


def repeated_docs(passage: str, n: int, domain: str) -> list[dict]:
    """n copies of one passage repeated 30 times: learnt in a few steps, then a waste."""
    return [{"text": passage * 30, "domain": domain} for _ in range(n)]


def decoy_rows(rows: list[dict], split: str, rng: np.random.Generator) -> list[dict]:
    words = corpus_words(rows)
    n = DECOY_DOCS[split]
    return noise_docs(words, n, rng, "noise") + repeated_docs(PASSAGES[0], n, "repeated")


def swamped_rows(rows: list[dict], split: str, rng: np.random.Generator) -> list[dict]:
    """As many decoys as real domains: noise1-4 (separate draws) and repeated1-3 (three passages)."""
    words = corpus_words(rows)
    n = DECOY_DOCS[split]
    noise = [d for i in range(SWAMPED_NOISE) for d in noise_docs(words, n, rng, f"noise{i + 1}")]
    return noise + [
        d for i, p in enumerate(PASSAGES) for d in repeated_docs(p, n, f"repeated{i + 1}")
    ]


def derive(kind: str, seed: int = 0) -> Path:
    src = default_corpus_dir()
    if not (src / "manifest.json").is_file():
        sys.exit(f"the bundled corpus is not built at {src}: run `acodm corpus build` first")
    manifest = json.loads((src / "manifest.json").read_text())
    rng = np.random.default_rng(seed)
    splits = {split: read_rows(src / f"{split}.jsonl") for split in ("train", "validation")}
    if kind == "decoys":
        out_splits = {split: rows + decoy_rows(rows, split, rng) for split, rows in splits.items()}
        domains = {
            **manifest["domains"],
            "noise": {"description": "uniformly drawn corpus words (decoy)"},
            "repeated": {"description": "one short passage repeated (decoy)"},
        }
    elif kind == "swamped":
        out_splits = {
            split: rows + swamped_rows(rows, split, rng) for split, rows in splits.items()
        }
        domains = {**manifest["domains"], **{d: {"description": "decoy"} for d in SWAMPED_DECOYS}}
    elif kind == "merged":
        owner = {d: new for new, olds in MERGES.items() for d in olds}
        out_splits = {
            split: [{**r, "domain": owner[r["domain"]]} for r in rows]
            for split, rows in splits.items()
        }
        domains = {new: {"description": " + ".join(olds)} for new, olds in MERGES.items()}
    else:
        raise SystemExit(f"unknown kind {kind!r}; choose one of {list(KINDS)}")
    name = f"{src.name}-{kind}"
    return write_corpus(
        src.parent / name,
        out_splits,
        {"name": name, "derived_from": str(src), "kind": kind, "seed": seed, "domains": domains},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)
    out = derive(args.kind)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
