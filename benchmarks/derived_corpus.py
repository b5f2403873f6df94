"""The mixing benchmark's derived corpora (BENCHMARKS.md): `decoys`, `swamped`, `junk` and `merged`,
built by the library (`acodm_ray/data/derived.py`, where each kind and its known answer are
described; `acodm corpus derive KIND` is the same). This script always rewrites the corpus, as the
benchmark always did, so benchmarks/mixing_benchmark.sh prepares its shards anew.

    python benchmarks/derived_corpus.py decoys
    python benchmarks/derived_corpus.py swamped
    python benchmarks/derived_corpus.py merged
    python benchmarks/derived_corpus.py junk

Each is written under $ACODM_HOME/corpus/debian-v1-<kind>, read with `corpus.source: bundled` and
`corpus.path: debian-v1-<kind>`.
"""

from __future__ import annotations

import argparse
import sys

from acodm_ray.data.derived import KINDS, derive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=list(KINDS))
    args = parser.parse_args(argv)
    print(f"wrote {derive(args.kind, force=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
