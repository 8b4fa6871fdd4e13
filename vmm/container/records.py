"""Records on disk: typed dataclasses, written atomically, read through one loader.

Every record pyvmm keeps in its state directory (a container's ``state.json``, an
image's ``<tag>.json``, a layer's ``layer.json``, a volume's ``volume.json``) is a
dataclass, and is read by ``load`` and written by ``write``, nothing else:

- ``write`` replaces the file atomically (``atomic.write_json``): a crash or a full
  disk leaves the old record or the new one, never half of one.
- ``load`` turns the JSON back into the dataclass, field by field from the type hints:
  nested dataclasses, ``list[...]``, ``dict[str, ...]``, ``X | None``, and
  ``Annotated[str, check]`` for values that must also pass a check (a digest, a
  name). Fields it does not know (a newer pyvmm's) are left out; a wrong type is
  refused by the field's name. A file that is missing, truncated, not JSON or
  ill-typed is not an exception for the caller to forget but a ``Broken`` value that
  carries the reason, so one corrupt record never stops a command about the others
  (``container ps -a`` lists it as ``Broken (reason)``; ``rm -f`` removes it).

Records live in directories pyvmm names and walks itself, so their content never
names a file: a layer is referred to by its digest (``Digest``), checked against the
store's own naming before anything is built from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from vmm.container import atomic
from vmm.errors import PyvmmError

T = TypeVar("T")

# The store names a layer by the sha256 of its tar (image-spec descriptor.md,
# "Digests", with the one algorithm pyvmm stores): nothing else is ever a layer name.
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
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


def check_digest(value: str) -> str:
    if not DIGEST.fullmatch(value):
        raise ValueError(f"{value!r:.80} is not a layer digest (sha256:<64 hex>)")
    return value


Digest = Annotated[str, check_digest]


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


def convert(value: object, tp: Any, where: str) -> Any:
    """``value`` (parsed JSON) as the type ``tp``; RecordError naming ``where`` if not."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = convert(value, base, where)
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
                return convert(value, arg, where)
        raise _wrong(value, tp, where)
    if origin is list:
        if type(value) is not list:
            raise _wrong(value, tp, where)
        (item,) = typing.get_args(tp)
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if type(value) is not dict:
            raise _wrong(value, tp, where)
        _, item = typing.get_args(tp)
        return {k: convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_json(value, tp, where)
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


def from_json(data: object, cls: type[T], where: str = "record") -> T:
    """The dataclass ``cls`` made from ``data``: unknown keys ignored, a missing
    required one or a wrong type refused by name."""
    if type(data) is not dict:
        raise RecordError(f"{where}: expected an object, found {_kind(data)}")
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = _key(f)
        if key not in data:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise RecordError(f"{where}: field {key!r} is missing")
            continue
        values[f.name] = convert(data[key], hints[f.name], f"{where} field {key!r}")
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


def write(path: Path, record: object) -> None:
    """Replace the record in ``path`` with ``record`` atomically (``atomic.py``)."""
    atomic.write_json(path, to_json(record))


def write_in_place(path: Path, record: object) -> bool:
    """Overwrite ``path`` with ``record`` in the space it already has: the last resort
    on a full disk, where ``write`` cannot make its temporary file. Not atomic (a crash
    half-way leaves a record ``load`` calls Broken); False if it does not fit."""
    data = json.dumps(to_json(record), separators=(",", ":"), sort_keys=True).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if len(data) > os.fstat(fd).st_size:
            return False
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def loaded(records: list[T | Broken]) -> list[T]:
    """The records that loaded, the broken ones left out."""
    return [r for r in records if not isinstance(r, Broken)]
