"""DocRouter: on the prepare job's driver, decides for each document, in source order, which split
it goes to and whether it is kept.

- Split, for a source without a validation split: a domain's document `i` (counting from 0, in
  source order) is a validation document when ceil((i + 1) f) > ceil(i f), f =
  `corpus.validation_fraction`: documents 0, 1/f, 2/f, ... So the split is deterministic, needs no
  count of the documents in advance (it streams), gives every domain ceil(n f) >= 1 validation
  documents, and does not depend on how the work was spread over workers.
- Caps: a domain's split keeps its first `max_docs_per_domain` documents and stops taking
  documents once it holds `max_tokens_per_domain` tokens (whole documents: the one that crosses
  the cap is kept). `full()` says when every domain is done, so a streamed source stops reading.

The state is a few counters per domain: checkpointed with the shards, so a resumed prepare
continues the same split.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from acodm_ray.data.manifest import SPLITS


def ceil_div(a: np.ndarray, q: int) -> np.ndarray:
    return -((-a) // q)


def validation_mask(first_index: int, count: int, fraction: float) -> np.ndarray:
    """Which of a domain's documents first_index .. first_index + count - 1 are validation."""
    f = Fraction(fraction).limit_denominator(1_000_000)
    i = np.arange(first_index, first_index + count, dtype=np.int64)
    return ceil_div((i + 1) * f.numerator, f.denominator) > ceil_div(i * f.numerator, f.denominator)


class DocRouter:
    def __init__(
        self, validation_fraction: float, max_docs: int | None = None, max_tokens: int | None = None
    ) -> None:
        self.fraction = float(validation_fraction)
        self.max_docs = max_docs
        self.max_tokens = max_tokens
        self.seen: dict[
            str, int
        ] = {}  # documents of each domain met so far (the split rule's index)
        self.docs: dict[str, dict[str, int]] = {s: {} for s in SPLITS}  # kept documents
        self.tokens: dict[str, dict[str, int]] = {s: {} for s in SPLITS}  # kept tokens

    def route(
        self, domain: str, split: str | None, lengths: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(is_validation [n] bool, keep [n] bool) for a run of one domain's consecutive documents
        with these token lengths (`split` None: the split rule decides)."""
        n = len(lengths)
        if split is None:
            is_val = validation_mask(self.seen.get(domain, 0), n, self.fraction)
            self.seen[domain] = self.seen.get(domain, 0) + n
        else:
            is_val = np.full(n, split == "validation")
        keep = np.ones(n, dtype=bool)
        for value, name in ((False, "train"), (True, "validation")):
            rows = np.flatnonzero(is_val == value)
            keep[rows] = self._take(domain, name, np.asarray(lengths)[rows])
        return is_val, keep

    def _take(self, domain: str, split: str, lengths: np.ndarray) -> np.ndarray:
        """Which of these documents (in order) the caps let into `split`; counts them."""
        docs, tokens = self.docs[split].get(domain, 0), self.tokens[split].get(domain, 0)
        keep = np.ones(len(lengths), dtype=bool)
        if self.max_docs is not None:
            keep &= np.arange(docs, docs + len(lengths)) < self.max_docs
        if self.max_tokens is not None:
            before = tokens + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            keep &= before < self.max_tokens
        self.docs[split][domain] = docs + int(keep.sum())
        self.tokens[split][domain] = tokens + int(np.asarray(lengths)[keep].sum())
        return keep

    def full(self, domains: list[str], splits: tuple[str, ...] = SPLITS) -> bool:
        """Every one of `domains` has reached a cap in each of `splits` (never, without caps)."""
        if self.max_docs is None and self.max_tokens is None:
            return False

        def done(split: str, d: str) -> bool:
            return (self.max_docs is not None and self.docs[split].get(d, 0) >= self.max_docs) or (
                self.max_tokens is not None and self.tokens[split].get(d, 0) >= self.max_tokens
            )

        return all(done(s, d) for s in splits for d in domains)

    def full_domains(self, splits: tuple[str, ...] = SPLITS) -> list[str]:
        """The domains met so far that no document can enter any more (every one of `splits` at a
        cap): the tokenizer actors may skip them, the result is the same."""
        met = set(self.seen) | {d for s in splits for d in self.docs[s]}
        return sorted(d for d in met if self.full([d], splits))

    def state_dict(self) -> dict[str, Any]:
        return {"seen": dict(self.seen), "docs": self.docs, "tokens": self.tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = {k: int(v) for k, v in state["seen"].items()}
        self.docs = {s: {k: int(v) for k, v in state["docs"][s].items()} for s in SPLITS}
        self.tokens = {s: {k: int(v) for k, v in state["tokens"][s].items()} for s in SPLITS}
