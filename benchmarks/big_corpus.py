"""A JSON-lines corpus of any size for the data-path benchmarks (never committed): documents of the
bundled corpus's seven domains, resampled, with their words shuffled within each line so no two
documents are alike (the tokenizer's word cache sees text as varied as the source's).

    python benchmarks/big_corpus.py --gb 4 --out /tmp/big4            # 4 GB of text, ~8 files
    python benchmarks/big_corpus.py --gb 0.1 --out /tmp/big01

Writes <out>/part-NNNNN.jsonl files of about 512 MB ({"text", "domain"} rows, domains mixed in
proportion to the bundled corpus) and <out>/corpus.yaml, a config that prepares it (column mode,
split by the prepare's rule). Needs the bundled corpus (`acodm corpus build`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acodm_ray.data.build import default_corpus_dir  # noqa: E402

FILE_BYTES = 512 << 20


def source_documents() -> dict[str, list[str]]:
    docs: dict[str, list[str]] = {}
    with open(default_corpus_dir() / "train.jsonl") as f:
        for line in f:
            row = json.loads(line)
            docs.setdefault(row["domain"], []).append(row["text"])
    return docs


def varied(text: str, rng: np.random.Generator) -> str:
    """The document with the words of each line in a random order (lines and words kept)."""
    out = []
    for line in text.split("\n"):
        words = line.split(" ")
        if len(words) > 2:
            words = [words[i] for i in rng.permutation(len(words))]
        out.append(" ".join(words))
    return "\n".join(out)


def write_corpus(out: Path, total_bytes: int, seed: int = 0) -> list[Path]:
    docs = source_documents()
    domains = sorted(docs)
    sizes = np.array([sum(map(len, docs[d])) for d in domains], dtype=np.float64)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    files, written, handle = [], 0, None
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="corpus") as bar:
        while written < total_bytes:
            if handle is None or handle.tell() >= FILE_BYTES:
                if handle:
                    handle.close()
                files.append(out / f"part-{len(files):05d}.jsonl")
                handle = open(files[-1], "w")  # noqa: SIM115  (closed when the next one opens)
            domain = domains[rng.choice(len(domains), p=sizes / sizes.sum())]
            text = varied(docs[domain][rng.integers(len(docs[domain]))], rng)
            line = json.dumps({"text": text, "domain": domain}) + "\n"
            handle.write(line)
            written += len(line)
            bar.update(len(line))
    handle.close()
    (out / "corpus.yaml").write_text(
        json.dumps(
            {
                "corpus": {
                    "source": "json",
                    "data_files": {"train": [str(f) for f in files]},
                    "validation_fraction": 0.01,
                }
            },
            indent=1,
        )  # fmt: skip
    )
    return files


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, required=True, help="size of the JSON lines written")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    files = write_corpus(Path(args.out), int(args.gb * (1 << 30)))
    print(f"{len(files)} files in {args.out}; config: {args.out}/corpus.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
