"""Replacing a file atomically: the one way pyvmm writes its JSON files.

A temporary file beside the target, fsync'ed, then renamed over it, and the directory
fsync'ed: a crash or a full disk leaves the old file or the new one, never half of
one, and never an empty one after a power cut (the data is on disk before the name
points at it). A module of its own, importing only ``json`` and ``os``, so that
``pyvmm-runtime`` pays for nothing more on every call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def tmp_name(name: str) -> str:
    """The temporary file ``write_json`` makes for ``name``; dot-named, never a record."""
    return f".{name}.{os.getpid()}.tmp"


def is_tmp(name: str) -> bool:
    """Whether ``name`` is a temporary file ``write_json`` left behind (a crash mid-write)."""
    return name.startswith(".") and name.endswith(".tmp")


def write_json(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON atomically (see the module docstring)."""
    tmp = path.with_name(tmp_name(path.name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
