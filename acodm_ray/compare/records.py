"""Dataclasses written to and read from JSON: the one mechanism under the comparison's typed results
(`summary`, `figures`).

Why not `typed_config.from_dict`: a config is read from YAML a user wrote, so it converts what is
lossless (6e-3 as a string, an int for a float) and knows no absent-vs-null; a summary is read back
from what this code wrote, so nothing is converted (a summary re-written is the summary read),
per-seed maps have int keys, and some figures are only written when they exist (`optional()`).

Reading is strict: an unknown key, a missing key or a value of the wrong type raises
`SummaryFormatError` naming its path (`summary.headline.odm.step_ms.mean`), so a field renamed in
code or on disk shows at the first read instead of as a KeyError in a report.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from acodm_ray.errors import AcodmError

T = TypeVar("T", bound="JsonRecord")


class SummaryFormatError(AcodmError, ValueError):
    """A summary on disk does not have the shape (or the format version) this code reads."""


def optional(default: Any = None) -> Any:
    """A field written only when it is not None: the figures that exist for some methods and
    comparisons only (steps to ODM's best needs ODM among the methods); the key is absent otherwise,
    as in every summary written before these types."""
    return dataclasses.field(default=default, metadata={"omit_if_none": True})


def _key_to_json(key: Any) -> str:
    """Map keys as JSON has them: seeds 0 -> "0", training fractions 0.25 -> "0.25"."""
    return f"{key:g}" if isinstance(key, float) else str(key)


def to_json(value: Any) -> Any:
    """Plain JSON data of a record, in field order (the order the summaries on disk have)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (getattr(value, f.name) is None and f.metadata.get("omit_if_none"))
        }
    if isinstance(value, dict):
        return {_key_to_json(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _wrong(where: str, expected: str, value: Any) -> SummaryFormatError:
    return SummaryFormatError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


def _read_key(key: str, tp: Any, where: str) -> Any:
    try:
        return tp(key) if tp in (int, float) else key
    except ValueError:
        raise SummaryFormatError(f"{where}: key {key!r} is not a {tp.__name__}") from None


def _read_scalar(value: Any, tp: Any, where: str) -> Any:
    """int, float, str, bool as written: an int stays an int in a float field (no conversion, so a
    summary re-written has the bytes it was read with), a bool is never a number."""
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    raise _wrong(where, tp.__name__, value)


def read(value: Any, tp: Any, where: str) -> Any:
    """`value` (JSON data) as the annotation `tp` says, checked all the way down."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise _wrong(where, " or ".join(getattr(a, "__name__", str(a)) for a in args), value)
        (kind,) = [a for a in args if a is not type(None)]  # the types here are X | None only
        return read(value, kind, where)
    if dataclasses.is_dataclass(tp):
        return tp.from_json(value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        return [read(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "a mapping", value)
        return {
            _read_key(k, args[0], where): read(v, args[1], f"{where}.{k}") for k, v in value.items()
        }
    return _read_scalar(value, tp, where)


class JsonRecord:
    """Mixin of the summary's dataclasses: `to_json()` and the strict `from_json(data)`."""

    def to_json(self) -> dict[str, Any]:
        """This record as JSON data, keys in field order, `optional()` fields only when set."""
        return to_json(self)

    @classmethod
    def from_json(cls: type[T], data: Any, where: str | None = None) -> T:
        """The record from JSON data, every key known and every value of its field's type (errors
        name `where`, the path so far)."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise _wrong(where, "a mapping", data)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise SummaryFormatError(
                f"{where}: unknown key(s) {unknown}; {cls.__name__} has {list(fields)}"
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise SummaryFormatError(f"{where}: missing key(s) {missing} of {cls.__name__}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: read(v, hints[k], f"{where}.{k}") for k, v in data.items()})
