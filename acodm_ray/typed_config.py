"""Typed dataclasses from YAML and `section.key=value` overrides, with errors that name the bad key.

Why our own and not OmegaConf or tyro: neither is installed with Ray, and what this module does is
small enough to read in one sitting: unknown keys and wrong types raise `ConfigError` naming
`section.key`, conversions are lossless only, and `6e-3`, which PyYAML (YAML 1.1) reads as a string,
becomes the number the user meant.

The dataclass field is the one source of truth about a setting: its annotation says what it takes
(a `typing.Literal` lists the allowed values, once: `coerce` and `check_choices` check them, code that
needs them as a tuple derives it with `typing.get_args`), its default is the default, and the string
literal right after it (an attribute docstring, read from the source by `field_docs`) is its
documentation, from which `--help` (`field_help`) and docs/config.md (`acodm_ray.config_docs`) come.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from acodm_ray.errors import ConfigError

_SCIENTIFIC = re.compile(
    r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+"
)  # 6e-3, 1E5, .5e-2: numbers YAML 1.1 leaves as strings


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def describe(tp: Any, value: Any = repr) -> str:
    """An annotation in words, as errors and docs/config.md say it ("an integer or null"); `value`
    spells an allowed value."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a, value) for a in args)
    if origin is typing.Literal:
        return ("one of " if len(args) > 1 else "") + ", ".join(value(a) for a in args)
    if origin is list or origin is tuple:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return "null" if tp is type(None) else words.get(tp, "any value")


def _is_choice(tp: Any) -> bool:
    """Whether `tp` is a Literal, alone or in a union (its values are then checked)."""
    if typing.get_origin(tp) is typing.Literal:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and any(
        typing.get_origin(a) is typing.Literal for a in typing.get_args(tp)
    )


def choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a Literal annotation (also inside a union), else None."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    found = [choices(a) for a in typing.get_args(tp)] if _is_choice(tp) else []
    return next((c for c in found if c), None)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where it is lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) > 1:  # say every way the value could have been given
            raise ConfigError(f"{where}: expected {describe(tp)}, got {value!r}")
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return {str(k): coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            return float(
                value
            )  # PyYAML (YAML 1.1) reads 6e-3 and 1e5 as strings; YAML 1.2 and users mean numbers
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(
                f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
            )
        return value
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrong types. Keys the class names
    in `RETIRED_KEYS` (fields it no longer has) are accepted and dropped, so old files still load."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in data.items() if k not in getattr(cls, "RETIRED_KEYS", ())}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def check_choices(cfg: Any, where: str) -> None:
    """Every field of dataclass `cfg` (nested ones too) whose annotation has a Literal holds one of
    its values: the check of a config built in code rather than loaded (`coerce` checks those)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_choices(value, f"{where}.{f.name}")
        elif _is_choice(hints[f.name]):
            coerce(value, hints[f.name], f"{where}.{f.name}")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: its docstring} of dataclass `cls`: the string literal right after each field in the
    class's source (the attribute-docstring convention; Sphinx and IDEs read it the same way)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {
        node.target.id: inspect.cleandoc(after.value.value)
        for node, after in zip(body, body[1:])
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }


def field_of(cls: type, dotted: str) -> tuple[Any, str]:
    """(annotation, docstring) of the field `dotted` ("rl.algo") of dataclass `cls`."""
    *sections, name = dotted.split(".")
    for section in sections:
        cls = typing.get_type_hints(cls)[section]
    if name not in typing.get_type_hints(cls):
        raise KeyError(f"no config field {dotted!r}")
    return typing.get_type_hints(cls)[name], field_docs(cls).get(name, "")


def field_help(cls: type, dotted: str) -> str:
    """`--help` text of a flag that sets the field `dotted`: the first sentence of its docstring
    and the key it overrides (argparse's %-formatting escaped)."""
    _, doc = field_of(cls, dotted)
    first = re.split(r"(?<!e\.g)(?<!i\.e)\.\s", " ".join(doc.split()), maxsplit=1)[0].rstrip(".")
    return f"{first} (overrides {dotted})".replace("%", "%%")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict of a config dataclass (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ["train.steps=10", "mixer.name=uniform"] into a nested dict (values parsed as YAML)."""
    data: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {err}") from err
        _set_dotted(data, key.strip(), value)
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data
