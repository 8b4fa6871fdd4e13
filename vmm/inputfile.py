"""Files a user names on the command line (kernels, programs, disk images): untrusted input.

A path can name anything: a FIFO, whose ``open`` blocks until a writer comes; a device
such as /dev/zero, which reads without end; a directory; a file larger than the memory it
is meant for. So a path is opened once, without blocking and without becoming a
controlling terminal, its kind is checked on that descriptor (``fstat``, so nothing can
swap the file between the check and the use), and a read stops at a bound.
"""

from __future__ import annotations

import errno
import os
import stat

from vmm.errors import PyvmmError

# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer (fifo(7));
# O_NOCTTY: a terminal device never becomes our controlling terminal (open(2)).
_OPEN_FLAGS = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_CHUNK = 1 << 20
# Opening a writable file fails with these when the file, its filesystem or its
# attributes forbid writing (open(2)): EACCES (permissions), EROFS, EPERM (immutable).
_NOT_WRITABLE = (errno.EACCES, errno.EROFS, errno.EPERM)


class InputFileError(PyvmmError):
    """A file the user named that cannot be used: the message names it and says why."""


class NotWritableError(InputFileError):
    """A file opened for writing that may only be read; the caller can say what to do."""


def kind(mode: int) -> str:
    """What a file is, in words, from its ``st_mode``."""
    for test, name in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return f"of unknown type {stat.S_IFMT(mode):#o}"


def open_input(
    path: str, what: str, *, writable: bool = False, block_device_ok: bool = False
) -> int:
    """Open ``path`` once and return the descriptor, refusing all but a regular file (and
    a block device if ``block_device_ok``). The caller owns the descriptor, which is
    blocking and close-on-exec; ``os.fdopen(fd, "rb")`` makes it a stream.

    ``what`` names the file in errors ("kernel", "disk image").
    """
    flags = _OPEN_FLAGS | (os.O_RDWR if writable else os.O_RDONLY)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _open_error(path, what, e, writable) from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (block_device_ok and stat.S_ISBLK(mode))):
            wanted = "a regular file or a block device" if block_device_ok else "a regular file"
            raise InputFileError(f"{what} {path!r} is {kind(mode)}, not {wanted}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_input(path: str, what: str, limit: int, limit_is: str = "the limit") -> bytes:
    """The whole of a regular file, refused if it is larger than ``limit`` bytes.

    The size is checked twice: ``fstat`` first, so that an oversized file is refused
    before a byte is read, then by reading at most one byte past the limit, for a file
    that grows meanwhile or that, like those in /proc, reports no size.
    ``limit_is`` says where the limit comes from ("guest memory").
    """
    fd = open_input(path, what)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise _too_large(path, what, size, limit, limit_is)
        chunks, total = [], 0
        want = size + 1  # one read for a file that is what fstat said
        while total <= limit:
            try:
                chunk = os.read(fd, min(want, limit + 1 - total))
            except OSError as e:
                raise InputFileError(f"cannot read {what} {path!r}: {e.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            want = _READ_CHUNK
        if total > limit:
            raise _too_large(path, what, None, limit, limit_is)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_error(path: str, what: str, e: OSError, writable: bool) -> InputFileError:
    if e.errno == errno.ENOENT:
        return InputFileError(f"{what} {path!r} does not exist")
    if e.errno in (errno.EISDIR, errno.ENXIO):
        # Opening a directory for writing, or a socket at all, fails before an fstat
        # could say what it is: stat the path only to word the error.
        try:
            return InputFileError(f"{what} {path!r} is {kind(os.stat(path).st_mode)}")
        except OSError:
            pass
    if writable and e.errno in _NOT_WRITABLE:
        return NotWritableError(f"{what} {path!r} is not writable ({e.strerror})")
    return InputFileError(f"cannot open {what} {path!r}: {e.strerror}")


def _too_large(path: str, what: str, size: int | None, limit: int, limit_is: str) -> InputFileError:
    if size is None:  # it said less, and then read more
        return InputFileError(f"{what} {path!r} is larger than {_bytes(limit)} ({limit_is})")
    return InputFileError(
        f"{what} {path!r} is {_bytes(size)}; at most {_bytes(limit)} ({limit_is})"
    )


def _bytes(n: int) -> str:
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"
