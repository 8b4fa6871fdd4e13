"""Typed records read from untrusted JSON: every field present and of its declared type.

A snapshot's manifest comes from a file anyone may have edited, truncated or written by
another version of pyvmm. ``load`` turns the JSON into the dataclass it should be, or
raises ``RecordError`` naming the first field that is missing, unknown or of the wrong
type, so that nothing downstream meets a string where it wanted a number.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    pass


def load(cls: type[T], data: Any, where: str = "") -> T:
    """``cls`` (a dataclass) from ``data``, checked field by field, recursively."""
    if not isinstance(data, dict):
        raise RecordError(f"{where or cls.__name__}: expected an object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecordError(f"{where or cls.__name__}: unknown field {unknown[0]!r}")
    values = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            raise RecordError(f"{path}: missing")
        values[f.name] = _value(hints[f.name], data[f.name], path)
    return cls(**values)


def _value(kind: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return load(kind, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{path}: expected a list")
        return [_value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{path}: expected an object")
        return {k: _value(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if kind is int:
        if type(value) is not int:  # bool is an int to Python, not to a record
            raise RecordError(f"{path}: expected an integer")
        return value
    if kind is float:
        if type(value) not in (int, float):
            raise RecordError(f"{path}: expected a number")
        return float(value)
    if kind in (str, bool):
        if type(value) is not kind:
            raise RecordError(f"{path}: expected {'text' if kind is str else 'true or false'}")
        return value
    raise TypeError(f"{path}: records cannot hold {kind!r}")


def dump(record: Any) -> dict:
    return dataclasses.asdict(record)
