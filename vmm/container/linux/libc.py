"""Thin, checked wrappers over the cffi libc bindings: an error becomes an OSError."""

from __future__ import annotations

import os

from vmm.container.linux._libc import ffi, lib


def check(result: int, what: str) -> int:
    """Raise OSError(errno) naming ``what`` when a libc call returned -1."""
    if result == -1:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, where: str | None = None) -> None:  # fmt: skip
    """mount(2); ``where`` names ``target`` in errors (a /proc/self/fd/N, say)."""
    check(
        lib.mount(
            source.encode() if source else ffi.NULL,
            target.encode(),
            fstype.encode() if fstype else ffi.NULL,
            flags,
            data.encode() if data else ffi.NULL,
        ),
        f"mount {fstype or 'bind'} on {where or target}",
    )


def umount2(target: str, flags: int) -> None:
    check(lib.umount2(target.encode(), flags), f"umount {target}")


def prctl(option: int, arg2: int = 0) -> None:
    check(lib.prctl(option, arg2, 0, 0, 0), f"prctl {option}")
