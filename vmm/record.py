"""Typed records read from untrusted JSON: the one loader for every record pyvmm keeps.

A snapshot's manifest (``snapshot.py``) and every record of the container store
(``container/records.py``: a container's ``container.json``, an image's
``<tag>.json``, a layer's ``layer.json``, a volume's ``volume.json``, the OCI core's
``state.json``) come from files anyone may have edited, truncated or written with
another version of pyvmm. They are dataclasses, and this module turns JSON back into
them and them into JSON, nothing else:

- ``from_json`` builds the dataclass field by field from its type hints: nested
  dataclasses, ``list[...]``, ``dict[str, ...]``, ``X | None``, ``Any``, and
  ``Annotated[str, check]`` for values that must also pass a check (a digest, a
  name). A wrong type, a missing field, or a failed check is refused by the field's
  name (``RecordError``), so nothing downstream meets a string where it wanted a
  number. Fields it does not know (a newer pyvmm's) are left out, unless the record
  is one whose every field is fixed by its version (``unknown="refuse"``: the
  snapshot manifest, where an unknown field means damage).
- ``load`` reads a record's file, bounded: one that is missing, truncated, not JSON
  or ill-typed is not an exception for the caller to forget but a ``Broken`` value
  that carries the reason, so one corrupt record never stops a command about the
  others (``container ps -a`` lists it as ``Broken (reason)``; ``rm -f`` removes it).

Below both layers (the machine's and the containers'): it imports neither.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from vmm.errors import PyvmmError

T = TypeVar("T")

# How big a record may be before it is refused unread (the largest real ones, a
# container's with a custom seccomp profile, are tens of KiB).
MAX_RECORD = 4 << 20


class RecordError(PyvmmError):
    """A record on disk that is not what its type says."""


@dataclasses.dataclass(frozen=True)
class Broken:
    """A record that could not be loaded: where it was, and why."""

    path: Path
    reason: str


def json_name(name: str) -> dict:
    """``field(metadata=json_name("Env"))``: the key a field has in the JSON."""
    return {"json": name}


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("json", f.name)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return _HINTS[cls]


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")  # fmt: skip


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _expected(typing.get_args(tp)[0])
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_expected(a) for a in typing.get_args(tp))
    if origin is list:
        return "an array"
    if origin is dict or dataclasses.is_dataclass(tp) or tp is dict:
        return "an object"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
            type(None): "null"}.get(tp, str(tp))  # fmt: skip


def _wrong(value: object, tp: Any, where: str) -> RecordError:
    return RecordError(f"{where}: expected {_expected(tp)}, found {_kind(value)}")


def convert(value: object, tp: Any, where: str, unknown: str = "ignore") -> Any:
    """``value`` (parsed JSON) as the type ``tp``; RecordError naming ``where`` if not."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = convert(value, base, where, unknown)
        for check in checks:
            try:
                check(value)
            except (ValueError, PyvmmError) as e:
                raise RecordError(f"{where}: {e}") from None
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None) and _fits(value, arg):
                return convert(value, arg, where, unknown)
        raise _wrong(value, tp, where)
    if origin is list:
        if type(value) is not list:
            raise _wrong(value, tp, where)
        (item,) = typing.get_args(tp)
        return [convert(v, item, f"{where}[{i}]", unknown) for i, v in enumerate(value)]
    if origin is dict:
        if type(value) is not dict:
            raise _wrong(value, tp, where)
        _, item = typing.get_args(tp)
        return {k: convert(v, item, f"{where}.{k}", unknown) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_json(value, tp, where, unknown)
    if tp is Any:
        return value
    if not _fits(value, tp):
        raise _wrong(value, tp, where)
    return float(value) if tp is float else value


def _fits(value: object, tp: Any) -> bool:
    """Whether ``value`` has the JSON shape of ``tp`` (its items are checked later)."""
    origin = typing.get_origin(tp) or tp
    if origin is Annotated:
        return _fits(value, typing.get_args(tp)[0])
    if dataclasses.is_dataclass(origin):
        return type(value) is dict
    if origin is float:
        return type(value) in (int, float)
    return type(value) is origin  # bool is not an int here, nor an int a bool


def from_json(data: object, cls: type[T], where: str = "record", unknown: str = "ignore") -> T:
    """The dataclass ``cls`` made from ``data``: unknown keys ignored (or, with
    ``unknown="refuse"``, refused), a missing required one or a wrong type refused by
    name."""
    if type(data) is not dict:
        raise RecordError(f"{where}: expected an object, found {_kind(data)}")
    hints = _hints(cls)
    if unknown == "refuse":
        extra = sorted(set(data) - {_key(f) for f in dataclasses.fields(cls)})
        if extra:
            raise RecordError(f"{where}: unknown field {extra[0]!r}")
    values = {}
    for f in dataclasses.fields(cls):
        key = _key(f)
        if key not in data:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise RecordError(f"{where}: field {key!r} is missing")
            continue
        values[f.name] = convert(data[key], hints[f.name], f"{where} field {key!r}", unknown)
    try:
        return cls(**values)
    except (ValueError, PyvmmError) as e:  # the record's own checks (__post_init__)
        raise RecordError(f"{where}: {e}") from None


def to_json(value: Any) -> Any:
    """A record (or a value inside one) as JSON data, keys as ``from_json`` reads them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_key(f): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def read(path: Path) -> object:
    """The JSON in ``path``, bounded; OSError and ValueError as they come."""
    with open(path, "rb") as f:
        data = f.read(MAX_RECORD + 1)
    if len(data) > MAX_RECORD:
        raise ValueError(f"larger than {MAX_RECORD >> 20} MiB")
    return json.loads(data)


def _unreadable(e: Exception) -> str:
    """Why a record's file did not parse, in a few words."""
    if isinstance(e, FileNotFoundError):
        return "is missing"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, OSError):
        return f"cannot be read ({e.strerror or e})"
    if isinstance(e, UnicodeDecodeError):
        return "is not UTF-8 text"
    if isinstance(e, RecursionError):
        return "is nested too deeply"
    return f"is not JSON ({str(e).split(':')[0]})"


def load(path: Path, cls: type[T], **identity: object) -> T | Broken:
    """The record of type ``cls`` in ``path``, or ``Broken`` with the reason it is not.

    ``identity`` are fields whose values the record's place in the store already
    says (a container's id is its directory's name): a record claiming to be another
    is broken too.
    """
    try:
        record = from_json(read(path), cls, path.name)
    except RecordError as e:
        return Broken(path, str(e))
    except (OSError, ValueError, RecursionError) as e:
        return Broken(path, f"{path.name} {_unreadable(e)}")
    for name, want in identity.items():
        found = getattr(record, name)
        if found != want:
            return Broken(path, f"{path.name}: {name} {found!r:.80} is not {want!r}")
    return record


def loaded(records: list[T | Broken]) -> list[T]:
    """The records that loaded, the broken ones left out."""
    return [r for r in records if not isinstance(r, Broken)]
