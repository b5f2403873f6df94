"""What the prepare job's Ray Data workers do to each block: pick out the documents (text, domain)
and encode them.

`extract_docs` keeps the rows that are documents of a wanted domain: a non-empty text, a domain
from the domain column (dotted for nested fields) or, in file mode, from the file the row came
from. `Encoder` is the tokenizer actor of `map_batches`: it yields, per piece of a few MB of text
(`text_pieces`), a table with each document's domain, its length in characters and its token ids
followed by eos, as a list column the driver reads without a Python loop. Which split a document
goes to is the driver's decision (`router`), since it depends on the document's place in its
domain.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from tokenizers import Tokenizer

from acodm_ray.data.corpus_errors import MissingColumnError
from acodm_ray.data.readers import flat_columns
from acodm_ray.data.sources import SourcePlan

# text encoded at a time by a tokenizer actor (bytes): ~80 MB of the actor's memory in flight
ENCODE_BYTES = 2 << 20


@dataclass
class DocSpec:
    """How a block's rows become documents (small and picklable: shipped to every worker)."""

    text_column: str
    domain_column: str | None  # None: file mode, the domain comes from `path_domains`
    path_domains: dict[str, str]  # file mode: normalised path -> domain
    wanted: list[str] | None  # keep only these domains (corpus.domains); None: every domain


def doc_spec(cfg: Any, plan: SourcePlan) -> DocSpec:
    """The DocSpec of an experiment config's corpus (`cfg.corpus.domains` are the wanted ones)."""
    return DocSpec(
        plan.text_column,
        plan.domain_column,
        {os.path.normpath(i.path): i.domain for i in plan.inputs if i.domain is not None},
        list(cfg.corpus.domains) or None,
    )


def column(table: pa.Table, dotted: str) -> pa.ChunkedArray | pa.Array:
    """A (possibly dotted, nested-struct) column of a block; MissingColumnError lists what exists."""
    head, *rest = dotted.split(".")
    if head not in table.column_names:
        raise MissingColumnError(
            f"column {dotted!r} not found; available columns: {', '.join(flat_columns(table.schema))}"
        )
    values: Any = table.column(head)
    for key in rest:
        if not pa.types.is_struct(values.type) or values.type.get_field_index(key) < 0:
            raise MissingColumnError(
                f"column {dotted!r} not found; available columns: {', '.join(flat_columns(table.schema))}"
            )
        values = pc.struct_field(values, key)
    return values


def extract_docs(table: pa.Table, spec: DocSpec) -> pa.Table:
    """(domain, text) of every document in the block, in row order."""
    texts = pc.cast(column(table, spec.text_column), pa.string())
    if spec.domain_column is not None:
        domains = pc.cast(column(table, spec.domain_column), pa.string())
    else:
        paths = [os.path.normpath(p) for p in table.column("path").to_pylist()]
        domains = pa.array([spec.path_domains[p] for p in paths], pa.string())
    keep = pc.and_(
        pc.is_valid(domains), pc.not_equal(pc.utf8_trim_whitespace(pc.fill_null(texts, "")), "")
    )
    keep = pc.fill_null(keep, False)
    out = {"domain": pc.filter(domains, keep), "text": pc.filter(texts, keep)}
    if "path" in table.column_names:  # which input file each document came from (resume points)
        out["path"] = pc.filter(table.column("path"), keep)
    docs = pa.table(out)
    if spec.wanted is None:
        return docs
    return docs.filter(pc.is_in(docs.column("domain"), pa.array(spec.wanted, pa.string())))


def domain_names(table: pa.Table, spec: DocSpec) -> pa.Table:
    """The distinct domain names of a block (column mode): the error for a wanted domain the
    source lacks lists what the source has."""
    names = pc.unique(pc.cast(column(table, spec.domain_column), pa.string())).drop_null()
    return pa.table({"domain": names})


def extract_for_tokenizer(table: pa.Table, spec: DocSpec) -> pa.Table:
    """Documents with their character counts (the tokenizer pass: the driver keeps the first
    `train_max_chars_per_domain` characters of each domain's train documents)."""
    docs = extract_docs(table, spec)
    return docs.append_column("chars", pc.utf8_length(docs.column("text")).cast(pa.int64()))


@ray.remote(num_cpus=0)
class FullDomains:
    """The domains the prepare's driver has no room for any more (its caps are reached): the
    tokenizer actors skip their documents instead of encoding them for nothing."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def set(self, names: list[str]) -> None:
        self.names = list(names)

    def get(self) -> list[str]:
        return self.names


class Encoder:
    """The tokenizer actor: documents -> per-document ids (eos appended), domain and characters."""

    def __init__(self, refs: list, eos_id: int, dtype: str, spec: DocSpec) -> None:
        # one core per actor: the pool is the parallelism
        os.environ.setdefault("RAYON_NUM_THREADS", "1")
        # [the tokenizer JSON's ObjectRef, the FullDomains actor]: nested, so passed by reference
        tokenizer_ref, self.full = refs
        self.tokenizer = Tokenizer.from_str(ray.get(tokenizer_ref))
        self.eos = int(eos_id)
        self.dtype = np.dtype(dtype)
        self.spec = spec

    def __call__(self, block: pa.Table) -> Iterator[pa.Table]:
        """The block's documents in pieces of at most ENCODE_BYTES of text, one output table each:
        encoding holds ~40 bytes per character in flight (the tokenizer's encodings, then Python
        lists of ids), so an actor's memory, and the driver's per block, follow the piece's size
        and not the block's, which a reader or a large row group sets."""
        docs = extract_docs(block, self.spec)
        full = ray.get(self.full.get.remote())
        if full:
            docs = docs.filter(
                pc.invert(pc.is_in(docs.column("domain"), pa.array(full, pa.string())))
            )
        for piece in text_pieces(docs, ENCODE_BYTES):
            texts = piece.column("text").to_pylist()
            # the ids alone (no character offsets): the same ids as encode_batch, faster
            encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            table = encoded_table(
                piece.column("domain"), texts, [e.ids for e in encodings], self.eos, self.dtype
            )
            if "path" in piece.column_names:
                table = table.append_column("path", piece.column("path"))
            yield table


def text_pieces(docs: pa.Table, limit: int) -> Iterator[pa.Table]:
    """Consecutive slices of whole documents of at most `limit` bytes of text each (a longer
    document is a piece of its own); nothing for a table without rows."""
    sizes = pc.binary_length(docs.column("text")).to_numpy(zero_copy_only=False)
    start, held = 0, 0
    for i, size in enumerate(sizes):
        if held and held + size > limit:
            yield docs.slice(start, i - start)
            start, held = i, 0
        held += int(size)
    if start < len(sizes):
        yield docs.slice(start)


def encoded_table(
    domains: Any, texts: list[str], ids: list[list[int]], eos: int, dtype: np.dtype
) -> pa.Table:
    """One row per document: domain, characters, tokens (its ids then eos, a list column)."""
    lengths = np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain(x, (eos,)) for x in ids),
        dtype=dtype,
        count=int(offsets[-1]),
    )
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))
    chars = pa.array([len(t) for t in texts], pa.int64())
    return pa.table({"domain": domains, "chars": chars, "tokens": tokens})
