"""Corpus settings derived from the bundled corpus, for the mixing benchmark (BENCHMARKS.md):

- `decoys`: the bundled corpus plus two domains a mixer should learn to avoid, with known answers:
  `noise` (documents of words drawn uniformly from the corpus's own words: real subwords, no
  structure, nothing to learn) and `repeated` (one short passage repeated over and over: learnt in
  a few steps, then a waste). Configs evaluate on the real domains only (`train.eval_domains`).
- `swamped`: the bundled corpus plus as many decoys as real domains (noise1-4, repeated1-3, made
  like the two above): uniform spends half its tokens on them, so the known answer (nothing on the
  decoys) has more to gain over uniform than in `decoys`, where it is worth less than seed noise.
- `junk`: the bundled corpus plus seven decoys of four kinds the other settings do not use, as many
  decoys as real domains like `swamped`: random bytes (`bytes1`: printable ASCII characters drawn
  uniformly; `bytes2`: base64 lines of random bytes), templated machine output (`logs1`: syslog
  lines; `logs2`: JSON telemetry records, random fields), near-duplicates (`dupes1`, `dupes2`: one
  real training document, of `manuals` and of `legal`, copied with 3% of its words replaced each
  time) and another script's text (`cyrillic`: `literature`'s documents with every Latin letter
  mapped to a Cyrillic one: the structure of prose, none of the evaluated words). Known answer
  (fixed before any run): nothing on the seven decoys, benchmarks/weights/junk_real_only.yaml.
- `merged`: the bundled corpus with K = 4 instead of 7, by merging domains of a kind (code =
  python_code + c_headers, prose = literature + dictionary, docs = manuals + latex, legal), so a
  default tuned to one K shows itself on another.

Each is written in the bundled corpus's format under $ACODM_HOME/corpus/<name>, read with
`corpus.source: bundled` and `corpus.path: <name>`.

    python benchmarks/derived_corpus.py decoys
    python benchmarks/derived_corpus.py swamped
    python benchmarks/derived_corpus.py merged
    python benchmarks/derived_corpus.py junk
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np

from acodm_ray.data.build import default_corpus_dir

KINDS = ("decoys", "swamped", "merged", "junk")
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


JUNK_DECOYS = ["bytes1", "bytes2", "logs1", "logs2", "dupes1", "dupes2", "cyrillic"]
DUPE_SOURCES = {"dupes1": "manuals", "dupes2": "legal"}  # whose first document is near-duplicated
DUPE_EDIT = 0.03  # share of a near-duplicate's words replaced in each copy
CYRILLIC_SOURCE = "literature"
BYTES_CHARS = 2000  # characters of a random-bytes document
LOG_LINES = 30  # lines of a machine-output document
# a fixed letter map: a-z -> 26 Cyrillic letters (the case kept)
_CYR = "абвгдежзийклмнопрстуфхцчшщ"
CYRILLIC = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", _CYR + _CYR.upper()
)


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


def bytes_docs(n: int, rng: np.random.Generator, domain: str) -> list[dict]:
    """`bytes1`: BYTES_CHARS printable ASCII characters (codes 32-126) drawn uniformly; `bytes2`:
    base64 of random bytes in 76-character lines. Nothing to learn past the character set."""
    if domain == "bytes1":
        return [
            {"text": "".join(map(chr, rng.integers(32, 127, BYTES_CHARS))), "domain": domain}
            for _ in range(n)
        ]
    out = []
    for _ in range(n):
        raw = base64.b64encode(rng.bytes(BYTES_CHARS * 3 // 4)).decode()
        out.append(
            {"text": "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76)), "domain": domain}
        )
    return out


def log_docs(n: int, rng: np.random.Generator, domain: str) -> list[dict]:
    """Templated machine output, LOG_LINES lines a document, every field random: `logs1` syslog
    lines, `logs2` JSON telemetry records. The template is learnt in a few steps, the fields never."""
    daemons = ["sshd", "cron", "kernel", "systemd", "nginx", "dhclient"]
    words = ["Accepted", "Failed", "Started", "Stopped", "Connection", "Timeout", "Reloading"]
    sensors = ["temp", "humidity", "pressure", "voltage", "rpm"]
    states = ["OK", "WARN", "FAIL"]
    docs = []
    for _ in range(n):
        lines = []
        for _ in range(LOG_LINES):
            h, m, s = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
            if domain == "logs1":
                lines.append(
                    f"Mar {rng.integers(1, 29):2d} {h:02d}:{m:02d}:{s:02d} host{rng.integers(100)} "
                    f"{rng.choice(daemons)}[{rng.integers(100, 65536)}]: {rng.choice(words)} "
                    f"for user{rng.integers(1000)} from 10.{rng.integers(256)}.{rng.integers(256)}."
                    f"{rng.integers(256)} port {rng.integers(1024, 65536)}"
                )
            else:
                lines.append(
                    json.dumps(
                        {
                            "ts": int(rng.integers(1_600_000_000, 1_700_000_000)),
                            "device": f"dev-{rng.integers(10000):04d}",
                            "sensor": str(rng.choice(sensors)),
                            "value": round(float(rng.normal(50, 20)), 2),
                            "status": str(rng.choice(states)),
                        }
                    )
                )
        docs.append({"text": "\n".join(lines), "domain": domain})
    return docs


def dupe_docs(source: str, n: int, rng: np.random.Generator, domain: str) -> list[dict]:
    """n near-duplicates of one document (its first DOC_WORDS words): each copy replaces DUPE_EDIT of
    the words, at random places, by random words of the same document."""
    words = np.array(source.split()[:DOC_WORDS])
    docs = []
    for _ in range(n):
        copy = words.copy()
        edit = rng.random(len(copy)) < DUPE_EDIT
        copy[edit] = rng.choice(words, size=int(edit.sum()))
        docs.append({"text": " ".join(copy), "domain": domain})
    return docs


def cyrillic_docs(rows: list[dict], n: int, domain: str) -> list[dict]:
    """The first n documents of CYRILLIC_SOURCE (their first DOC_WORDS words, cycled if there are
    fewer than n documents) with every Latin letter mapped to a Cyrillic one."""
    texts = [
        " ".join(r["text"].split()[:DOC_WORDS]) for r in rows if r["domain"] == CYRILLIC_SOURCE
    ]
    return [{"text": texts[i % len(texts)].translate(CYRILLIC), "domain": domain} for i in range(n)]


def junk_rows(
    rows: list[dict], split: str, rng: np.random.Generator, train: list[dict]
) -> list[dict]:
    """The seven decoys of `junk`, DECOY_DOCS[split] documents each, in JUNK_DECOYS order. Both
    splits' near-duplicates copy the same TRAINING document (as `repeated`'s validation repeats
    its training passage); `cyrillic` maps the split's own documents."""
    n = DECOY_DOCS[split]
    first = {r["domain"]: r["text"] for r in reversed(train)}  # each domain's first document
    out: list[dict] = []
    for d in JUNK_DECOYS:
        if d.startswith("bytes"):
            out += bytes_docs(n, rng, d)
        elif d.startswith("logs"):
            out += log_docs(n, rng, d)
        elif d.startswith("dupes"):
            out += dupe_docs(first[DUPE_SOURCES[d]], n, rng, d)
        else:
            out += cyrillic_docs(rows, n, d)
    return out


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
    elif kind == "junk":
        out_splits = {
            split: rows + junk_rows(rows, split, rng, splits["train"])
            for split, rows in splits.items()
        }
        domains = {**manifest["domains"], **{d: {"description": "decoy"} for d in JUNK_DECOYS}}
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
