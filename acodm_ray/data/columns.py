"""Reading Hugging Face `datasets` column batches by (dotted) column name: the texts of a corpus,
grouped by the column that names each row's domain (`meta.pile_set_name` for The Pile)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from acodm_ray.data.corpus_errors import MissingColumnError

Docs = dict[str, list[str]]
_MISSING = object()  # a column or nested field a row does not have


def dotted_get(row: Any, keys: list[str]) -> Any:
    """row[k1][k2]... for a dotted column's keys, or `_MISSING` where a row lacks one."""
    for key in keys:
        if not isinstance(row, dict) or key not in row:
            return _MISSING
        row = row[key]
    return row


def flat_columns(batch: dict[str, list[Any]]) -> list[str]:
    """Column names of a batch, nested dict fields as dotted paths (for error messages)."""
    names: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        names.append(prefix)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)

    for name, values in batch.items():
        walk(name, values[0] if values else None)
    return names


def column(batch: dict[str, list[Any]], name: str, source: str) -> list[Any]:
    """Values of a (possibly dotted) column in a batch; MissingColumnError lists what exists."""
    head, *rest = name.split(".")
    values = batch.get(head, _MISSING)
    if values is not _MISSING and rest:
        values = [dotted_get(v, rest) for v in values]
        if any(v is _MISSING for v in values):
            values = _MISSING
    if values is _MISSING:
        raise MissingColumnError(
            f"column {name!r} not found in {source}; available columns: "
            f"{', '.join(flat_columns(batch))}"
        )
    return values


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def collect_texts(
    batches: Iterable[dict[str, list[Any]]], text_column: str, source: str
) -> list[str]:
    """All non-empty texts of one column."""
    return [t for batch in batches for t in column(batch, text_column, source) if _is_text(t)]


def group_by_domain(
    batches: Iterable[dict[str, list[Any]]],
    text_column: str,
    domain_column: str,
    source: str,
    stop_when_full: tuple[set[str], int] | None = None,
) -> Docs:
    """Documents grouped by the value of the domain column, in row order. With
    stop_when_full=(domains, n) reading stops once each of those domains has n documents."""
    out: Docs = {}
    for batch in batches:
        texts = column(batch, text_column, source)
        domains = column(batch, domain_column, source)
        for text, domain in zip(texts, domains):
            if domain is None:
                continue
            docs = out.setdefault(str(domain), [])  # kept even if empty: reported by name later
            if _is_text(text):
                docs.append(text)
        if stop_when_full and all(
            len(out.get(d, [])) >= stop_when_full[1] for d in stop_when_full[0]
        ):
            break
    return out
