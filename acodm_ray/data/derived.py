"""Corpora derived from the bundled corpus: settings with a known answer, for the demo and the
mixing benchmark (BENCHMARKS.md). `acodm corpus derive KIND` writes one.

- `decoys`: the bundled corpus plus two domains a mixer should learn to avoid: `noise` (documents
  of words drawn uniformly from the corpus's own words: real subwords, no structure, nothing to
  learn) and `repeated` (one short passage repeated over and over: learnt in a few steps, then a
  waste). Configs evaluate on the real domains only (`train.eval_domains`).
- `swamped`: the bundled corpus plus as many decoys as real domains (noise1-4, repeated1-3, made
  like the two above): uniform spends half its tokens on them, so the known answer (nothing on the
  decoys) has more to gain over uniform than in `decoys`, where it is worth less than seed noise.
  `make demo` trains on it (configs/demo-decoys.yaml).
- `junk`: the bundled corpus plus seven decoys of four kinds the other settings do not use:
  random bytes (`bytes1`, `bytes2`), templated machine output (`logs1`, `logs2`), near-duplicates
  (`dupes1`, `dupes2`) and another script's text (`cyrillic`).
- `merged`: the bundled corpus with K = 4 instead of 7, by merging domains of a kind (code =
  python_code + c_headers, prose = literature + dictionary, docs = manuals + latex, legal), so a
  default tuned to one K shows itself on another.

Each is deterministic (one numpy generator, seed 0, drawn in a fixed order: the benchmark's tables
were made from these exact bytes) and written in the bundled corpus's format next to it, as
<bundled>-<kind> (read with `corpus.source: bundled` and `corpus.path: debian-v1-<kind>`).
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from acodm_ray.data.build import default_corpus_dir, publish_atomically
from acodm_ray.data.corpus_errors import CorpusNotBuiltError

Rows = list[dict]
Splits = dict[str, Rows]

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
SWAMPED_NOISE = 4  # + len(PASSAGES) repeated decoys = 7, as many as the bundled corpus's domains
SWAMPED_DECOYS = [f"noise{i + 1}" for i in range(SWAMPED_NOISE)] + [
    f"repeated{i + 1}" for i in range(len(PASSAGES))
]
JUNK_DECOYS = ["bytes1", "bytes2", "logs1", "logs2", "dupes1", "dupes2", "cyrillic"]
DUPE_SOURCES = {"dupes1": "manuals", "dupes2": "legal"}  # whose first document is near-duplicated
DUPE_EDIT = 0.03  # share of a near-duplicate's words replaced in each copy
CYRILLIC_SOURCE = "literature"
BYTES_CHARS = 2000  # characters of a random-bytes document
LOG_LINES = 30  # lines of a machine-output document
_CYR = "абвгдежзийклмнопрстуфхцчшщ"  # a fixed letter map: a-z -> 26 Cyrillic letters (case kept)
CYRILLIC = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", _CYR + _CYR.upper()
)


def read_rows(path: Path) -> Rows:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_corpus(out: Path, splits: Splits, manifest: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


# ------------------------------------------------------------------------------- decoy documents


def corpus_words(rows: Rows) -> np.ndarray:
    """The distinct words of `rows`, sorted, as one array (`rng.choice` on a list converts it per
    draw)."""
    return np.array(sorted({w for r in rows for w in r["text"].split()}))


def noise_docs(words: np.ndarray, n: int, rng: np.random.Generator, domain: str) -> Rows:
    """n documents of DOC_WORDS words drawn uniformly from `words`: real subwords, no structure,
    so nothing to learn past the word frequencies, which every real domain teaches too."""
    return [
        {"text": " ".join(rng.choice(words, size=DOC_WORDS)), "domain": domain} for _ in range(n)
    ]


def repeated_docs(passage: str, n: int, domain: str) -> Rows:
    """n copies of one passage repeated 30 times: learnt in a few steps, then a waste."""
    return [{"text": passage * 30, "domain": domain} for _ in range(n)]


def bytes_docs(n: int, rng: np.random.Generator, domain: str) -> Rows:
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


def log_line(rng: np.random.Generator, domain: str) -> str:
    """One line of machine output, every field random: a syslog line (`logs1`) or a JSON
    telemetry record (`logs2`)."""
    h, m, s = rng.integers(0, 24), rng.integers(0, 60), rng.integers(0, 60)
    if domain == "logs1":
        daemons = ["sshd", "cron", "kernel", "systemd", "nginx", "dhclient"]
        words = ["Accepted", "Failed", "Started", "Stopped", "Connection", "Timeout", "Reloading"]
        return (
            f"Mar {rng.integers(1, 29):2d} {h:02d}:{m:02d}:{s:02d} host{rng.integers(100)} "
            f"{rng.choice(daemons)}[{rng.integers(100, 65536)}]: {rng.choice(words)} "
            f"for user{rng.integers(1000)} from 10.{rng.integers(256)}.{rng.integers(256)}."
            f"{rng.integers(256)} port {rng.integers(1024, 65536)}"
        )
    record = {
        "ts": int(rng.integers(1_600_000_000, 1_700_000_000)),
        "device": f"dev-{rng.integers(10000):04d}",
        "sensor": str(rng.choice(["temp", "humidity", "pressure", "voltage", "rpm"])),
        "value": round(float(rng.normal(50, 20)), 2),
        "status": str(rng.choice(["OK", "WARN", "FAIL"])),
    }
    return json.dumps(record)


def log_docs(n: int, rng: np.random.Generator, domain: str) -> Rows:
    """n documents of LOG_LINES lines of one template (`log_line`): the template is learnt in a
    few steps, the fields never."""
    return [
        {"text": "\n".join(log_line(rng, domain) for _ in range(LOG_LINES)), "domain": domain}
        for _ in range(n)
    ]


def dupe_docs(source: str, n: int, rng: np.random.Generator, domain: str) -> Rows:
    """n near-duplicates of one document (its first DOC_WORDS words): each copy replaces DUPE_EDIT
    of the words, at random places, by random words of the same document. Its gradient agrees with
    its source domain's at first, then it only memorises one text."""
    words = np.array(source.split()[:DOC_WORDS])
    docs = []
    for _ in range(n):
        copy = words.copy()
        edit = rng.random(len(copy)) < DUPE_EDIT
        copy[edit] = rng.choice(words, size=int(edit.sum()))
        docs.append({"text": " ".join(copy), "domain": domain})
    return docs


def cyrillic_docs(rows: Rows, n: int, domain: str) -> Rows:
    """The first n documents of CYRILLIC_SOURCE (their first DOC_WORDS words, cycled if there are
    fewer than n documents) with every Latin letter mapped to a Cyrillic one: the structure of
    prose, none of the evaluated words."""
    texts = [
        " ".join(r["text"].split()[:DOC_WORDS]) for r in rows if r["domain"] == CYRILLIC_SOURCE
    ]
    return [{"text": texts[i % len(texts)].translate(CYRILLIC), "domain": domain} for i in range(n)]


# ------------------------------------------------------------------------------- the kinds


def decoys_kind(splits: Splits, domains: dict, rng: np.random.Generator) -> tuple[Splits, dict]:
    """Two decoys, `noise` and `repeated`: the first setting with a known answer."""
    out = {}
    for split, rows in splits.items():
        words, n = corpus_words(rows), DECOY_DOCS[split]
        noise = noise_docs(words, n, rng, "noise")
        out[split] = rows + noise + repeated_docs(PASSAGES[0], n, "repeated")
    return out, {
        **domains,
        "noise": {"description": "uniformly drawn corpus words (decoy)"},
        "repeated": {"description": "one short passage repeated (decoy)"},
    }


def swamped_kind(splits: Splits, domains: dict, rng: np.random.Generator) -> tuple[Splits, dict]:
    """As many decoys as real domains, noise1-4 (separate draws) and repeated1-3 (three passages),
    so that uniform spends half its tokens where nothing is to be learnt."""
    out = {}
    for split, rows in splits.items():
        words, n = corpus_words(rows), DECOY_DOCS[split]
        noise = [
            d for i in range(SWAMPED_NOISE) for d in noise_docs(words, n, rng, f"noise{i + 1}")
        ]
        repeated = [
            d for i, p in enumerate(PASSAGES) for d in repeated_docs(p, n, f"repeated{i + 1}")
        ]
        out[split] = rows + noise + repeated
    return out, {**domains, **{d: {"description": "decoy"} for d in SWAMPED_DECOYS}}


def junk_kind(splits: Splits, domains: dict, rng: np.random.Generator) -> tuple[Splits, dict]:
    """Seven decoys of four other kinds, DECOY_DOCS[split] documents each, in JUNK_DECOYS order, so
    that a mixer tuned on `swamped` meets decoys it has not seen. Both splits' near-duplicates copy
    the same TRAINING document (as `repeated`'s validation repeats its training passage);
    `cyrillic` maps the split's own documents."""
    first = {r["domain"]: r["text"] for r in reversed(splits["train"])}  # each domain's first doc
    out = {}
    for split, rows in splits.items():
        n, junk = DECOY_DOCS[split], []
        for d in JUNK_DECOYS:
            if d.startswith("bytes"):
                junk += bytes_docs(n, rng, d)
            elif d.startswith("logs"):
                junk += log_docs(n, rng, d)
            elif d.startswith("dupes"):
                junk += dupe_docs(first[DUPE_SOURCES[d]], n, rng, d)
            else:
                junk += cyrillic_docs(rows, n, d)
        out[split] = rows + junk
    return out, {**domains, **{d: {"description": "decoy"} for d in JUNK_DECOYS}}


def merged_kind(splits: Splits, domains: dict, rng: np.random.Generator) -> tuple[Splits, dict]:
    """K = 4: the domains of MERGES relabelled as one each (nothing drawn; `rng` is unused)."""
    owner = {d: new for new, olds in MERGES.items() for d in olds}
    out = {
        split: [{**r, "domain": owner[r["domain"]]} for r in rows] for split, rows in splits.items()
    }
    return out, {new: {"description": " + ".join(olds)} for new, olds in MERGES.items()}


DerivedKind = Callable[[Splits, dict, np.random.Generator], tuple[Splits, dict]]
KINDS: dict[str, DerivedKind] = {
    "decoys": decoys_kind,
    "swamped": swamped_kind,
    "merged": merged_kind,
    "junk": junk_kind,
}


def derived_dir(kind: str, src: Path | None = None) -> Path:
    """Where `derive` writes `kind`: next to the bundled corpus, named <its name>-<kind>."""
    src = src or default_corpus_dir()
    return src.parent / f"{src.name}-{kind}"


def derived_kind(root: Path) -> str | None:
    """The kind whose default place `root` is (<bundled name>-<kind>), else None."""
    return next((k for k in KINDS if root.name == derived_dir(k).name), None)


def derive(
    kind: str, src: Path | None = None, out: Path | None = None, seed: int = 0, force: bool = False
) -> Path:
    """Write the `kind` corpus derived from the bundled corpus at `src` (default: the built one) to
    `out` (default: `derived_dir`); return `out`. An existing one (its manifest) is kept unless
    `force`; the new one is written in a sibling temp dir and moved into place whole."""
    if kind not in KINDS:
        raise ValueError(f"unknown derived corpus {kind!r}; choose one of {list(KINDS)}")
    src = Path(src) if src else default_corpus_dir()
    out = Path(out) if out else derived_dir(kind, src)
    if (out / "manifest.json").is_file() and not force:
        return out
    if not (src / "manifest.json").is_file():
        raise CorpusNotBuiltError(
            f"the bundled corpus is not built at {src}: run `acodm corpus build` first"
        )
    manifest = json.loads((src / "manifest.json").read_text())
    splits = {split: read_rows(src / f"{split}.jsonl") for split in ("train", "validation")}
    out_splits, domains = KINDS[kind](splits, manifest["domains"], np.random.default_rng(seed))
    name = f"{src.name}-{kind}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        write_corpus(
            tmp,
            out_splits,
            {
                "name": name,
                "derived_from": str(src),
                "kind": kind,
                "seed": seed,
                "domains": domains,
            },
        )
        tmp.chmod(0o755)  # mkdtemp makes it private; the corpus is shared data
        publish_atomically(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
