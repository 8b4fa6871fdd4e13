"""Container paths resolved inside the rootfs, by the kernel (runc's securejoin).

A config.json names places in the container: mount destinations, device nodes, and
``pyvmm container``'s volume targets. Before pivot_root they are looked up under the
rootfs, which the image (or the bundle's author) controls: joined to it as strings,
``/../../tmp/x`` or a symlink to ``/`` would take a mount or a mknod out to the host.
Here such a path is resolved as if the rootfs were ``/``, as it will be inside the
container: ``..`` stops at it and absolute symlinks start from it. The kernel does
it with openat2(RESOLVE_IN_ROOT) (Linux 5.6); on an older kernel, a walk one
component at a time (O_PATH | O_NOFOLLOW, readlinkat, back to the rootfs at an
absolute link) does the same. Either way the answer is an O_PATH descriptor, and
the mount goes onto ``/proc/self/fd/N`` (``target``): nothing is looked up by name
again. (After pivot_root the rootfs *is* ``/``: the masked and read-only paths and
``process.cwd`` are resolved there, and cannot leave it either.)

A magic link (``/proc/self/root``...) on the way is refused, as runc refuses it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from vmm.container.linux._libc import ffi, lib
from vmm.errors import PyvmmError

MAX_LINKS = 40  # path_resolution(7): the symlinks one lookup may follow (ELOOP beyond)
_O_PATH = os.O_PATH | os.O_CLOEXEC


class OutsideError(PyvmmError):
    """A path that cannot be resolved inside the rootfs: a loop, a dangling link..."""


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _openat2(root_fd: int, path: str) -> int:
    resolve = lib.RESOLVE_IN_ROOT | lib.RESOLVE_NO_MAGICLINKS
    fd = lib.pyvmm_openat2(root_fd, ("/".join(_parts(path)) or ".").encode(), _O_PATH, resolve)
    if fd < 0:
        err = ffi.errno
        raise OSError(err, os.strerror(err), path)
    return fd


def walk(root_fd: int, path: str, partial: bool = False) -> tuple[int, list[str]]:
    """What openat2(RESOLVE_IN_ROOT) does, one component at a time (for kernels
    without it, and where part of the path is still to be made): an O_PATH fd, and
    with ``partial`` the components left from the first missing one on (the rest of
    a symlink's target among them), where FileNotFoundError would be raised."""
    pending = list(reversed(_parts(path)))  # a stack: the next component last
    dirs = [os.dup(root_fd)]  # from the root to where the walk is
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if len(dirs) > 1:
                    os.close(dirs.pop())
                continue
            try:
                fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dirs[-1])
            except FileNotFoundError:
                if not partial:
                    raise
                return os.dup(dirs[-1]), [name, *reversed(pending)]
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                dirs.append(fd)
                continue
            os.close(fd)
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(name, dir_fd=dirs[-1])
            if target.startswith("/"):
                while len(dirs) > 1:
                    os.close(dirs.pop())
            pending.extend(reversed(_parts(target)))
        return os.dup(dirs[-1]), []
    finally:
        for fd in dirs:
            os.close(fd)


def open_in(root_fd: int, path: str) -> int:
    """An O_PATH fd on ``path`` resolved beneath the directory ``root_fd`` as if it
    were ``/``; FileNotFoundError if something on the way is missing."""
    try:
        return _openat2(root_fd, path)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
    return walk(root_fd, path)[0]


def make(root_fd: int, path: str, file: bool = False) -> int:
    """``open_in``, making what is missing on the way (where a dangling symlink points,
    too, as runc's securejoin does): directories (0755) and, with ``file``, the last
    one an empty file (0644), for a file's bind mount."""
    try:
        try:
            return open_in(root_fd, path)
        except FileNotFoundError:
            fd, missing = walk(root_fd, path, partial=True)
        try:
            if ".." in missing:  # what it would climb out of does not exist yet
                raise OutsideError(f"{path}: '..' after a missing directory")
            for i, name in enumerate(missing):
                if file and i == len(missing) - 1:
                    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                    os.close(os.open(name, flags, 0o644, dir_fd=fd))
                else:
                    os.mkdir(name, 0o755, dir_fd=fd)
                made = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = made
        except BaseException:
            os.close(fd)
            raise
        return fd
    except OSError as e:
        if e.errno == errno.ELOOP:  # a loop, or a magic link
            raise OutsideError(f"{path}: too many levels of symbolic links") from None
        if e.errno == errno.ENOTDIR:
            raise OutsideError(f"{path}: a component is not a directory") from None
        raise


@contextlib.contextmanager
def target(rootfs: str, path: str, file: bool = False, create: bool = True) -> Iterator[str]:
    """``/proc/self/fd/N`` naming ``path`` inside ``rootfs`` (made if missing, with
    ``create``), for the ``with`` block: what mount(2) and friends are given.

    The name lands on the very directory resolved, under anything mounted on it
    since: to act on a mount made there (remount, fill it), take a ``target`` again.
    A path resolving to the rootfs itself is refused: nothing goes over its root.
    """
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = make(root, path, file) if create else open_in(root, path)
        try:
            if create and os.path.samestat(os.fstat(fd), os.fstat(root)):
                raise OutsideError(f"{path} resolves to the container's root")
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    finally:
        os.close(root)
