"""``pyvmm container cp``: files between a container and the host, both ways.

The container's side is its own to shape: any path, symlink or ``..`` in it is the
image's or the running container's, and must not lead out to the host's files. So:

- the container's root is a directory fd: a running container's own view
  (``/proc/PID/root``, its volumes included, as Docker's ``cp`` sees it); a stopped
  one's overlay, mounted in a child process's private mount namespace (nothing is
  mounted on the host; it goes with the child);
- a container path's directory is resolved inside that root by the kernel
  (``inroot.open_in``: openat2 RESOLVE_IN_ROOT, or its fd walk), so ``..`` stops at
  the container's root and a symlink to ``/`` means the container's ``/``; the last
  component is never followed (a symlink is copied as a symlink, as by Docker);
- trees are copied by ``fdtree`` (directory fds, O_NOFOLLOW, owners, modes and times
  kept: ``docker cp -a``), new files made with O_EXCL.

As Docker: a destination that is a directory receives the source under its own
name; one that does not exist is created (its parent must); a regular file replaces
a regular file. Unlike Docker, a directory is not merged into an existing one of
the same name (refused).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from pathlib import Path

from vmm.container.linux import fdtree, inroot
from vmm.errors import PyvmmError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def split(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` to (container, path); a host path to (None, path). As Docker:
    a path starting with / or . is the host's, whatever colons it holds."""
    name, colon, path = arg.partition(":")
    if not colon or arg.startswith(("/", ".")) or "/" in name:
        return None, arg
    return name, path


def _parts(path: str) -> tuple[str, str]:
    """(directory, last component) of a container path, normalized under its root
    (``..`` cannot climb above it: the kernel's resolution would stop there too)."""
    return posixpath.split(posixpath.normpath("/" + path.lstrip("/")))


def _open_dir(root_fd: int, directory: str) -> int:
    """A readable fd on ``directory`` resolved inside the container's root."""
    try:
        where = inroot.open_in(root_fd, directory)
    except OSError as e:
        raise PyvmmError(f"{directory} in the container: {e.strerror}") from None
    try:
        return os.open(".", _DIR, dir_fd=where)
    except NotADirectoryError:
        raise PyvmmError(f"{directory} in the container is not a directory") from None
    finally:
        os.close(where)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def copy_entry(src_dir: int, name: str, dst_dir: int, dst_name: str) -> None:
    """Copy the entry ``name`` of ``src_dir`` (not followed) to ``dst_name`` in
    ``dst_dir``, or, if that is a directory, into it under ``name``."""
    st = os.lstat(name, dir_fd=src_dir)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise PyvmmError(f"{name} is not a file, directory or symbolic link")
    with contextlib.ExitStack() as fds:
        there = _lstat(dst_name, dst_dir)
        if there is not None and stat.S_ISDIR(there.st_mode):
            dst_dir = fdtree.open_dir(dst_name, dst_dir)
            fds.callback(os.close, dst_dir)
            dst_name, there = name, _lstat(name, dst_dir)
        if there is not None:
            if not (stat.S_ISREG(there.st_mode) and stat.S_ISREG(st.st_mode)):
                raise PyvmmError(f"{dst_name} exists already (only a file replaces a file)")
            os.unlink(dst_name, dir_fd=dst_dir)
        if not stat.S_ISDIR(st.st_mode):
            fdtree.copy_one(name, st, src_dir, dst_dir, dst_name)
            return
        os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        src = fdtree.open_dir(name, src_dir)
        fds.callback(os.close, src)
        dst = fdtree.open_dir(dst_name, dst_dir)
        fds.callback(os.close, dst)
        fdtree.copy(src, dst)
        fdtree.copy_metadata(dst, st)


def copy_out(root_fd: int, path: str, dest: Path) -> None:
    """The container's ``path`` to the host's ``dest``."""
    directory, name = _parts(path)
    src_dir = _open_dir(root_fd, directory)
    try:
        if not name:  # the container's root: its content, into a new directory
            os.mkdir(dest, 0o755)
            with fdtree.opened(dest) as dst:
                fdtree.copy(src_dir, dst)
            return
        with fdtree.opened(dest.parent) as dst_dir:
            copy_entry(src_dir, name, dst_dir, dest.name or ".")
    except FileNotFoundError as e:
        raise PyvmmError(f"{e.filename or path}: no such file or directory") from None
    finally:
        os.close(src_dir)


def copy_in(root_fd: int, source: Path, path: str) -> None:
    """The host's ``source`` to the container's ``path``."""
    directory, name = _parts(path)
    dst_dir = _open_dir(root_fd, directory)
    try:
        with fdtree.opened(source.parent) as src_dir:
            copy_entry(src_dir, source.name, dst_dir, name or ".")
    except FileNotFoundError as e:
        raise PyvmmError(f"{e.filename or source}: no such file or directory") from None
    finally:
        os.close(dst_dir)


def in_child(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child (whose mounts die with it); its PyvmmError or
    OSError comes back here as a PyvmmError."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            action()
            code = 0
        except BaseException as e:  # noqa: BLE001 - the parent reports it
            why = str(e) if isinstance(e, PyvmmError) else f"{getattr(e, 'strerror', e)}"
            os.write(w, why.encode(errors="replace")[:4096])
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        message = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status or message:
        raise PyvmmError(message or "cp: the copying process died")
