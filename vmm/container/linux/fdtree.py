"""Walking trees that an image or a container controls: by directory fd, iteratively.

A layer, a container's writable layer and a volume hold whatever their author put
there: paths tens of thousands of directories deep (far past PATH_MAX and Python's
recursion limit) and symlinks to anywhere on the host. Every walk over such a tree is
done here, one way:

- descend with ``openat(parent_fd, name, O_DIRECTORY | O_NOFOLLOW)``, one component
  at a time, never through a joined path string: no symlink is ever followed and no
  path is ever too long;
- iterate with an explicit stack, never recursion;
- stay on one filesystem: a mount point in the tree is an error, never entered;
- hold one directory fd however deep the walk goes, and climb back through ``..``,
  checking (device, inode) that the directory reached is the one left. A directory
  moved while it is walked stops the walk (``TreeChanged``) instead of leading it
  somewhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from vmm.errors import PyvmmError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeChanged(PyvmmError):
    """A directory moved while pyvmm walked it: the walk stops rather than follow it."""

    def __init__(self) -> None:
        super().__init__("a directory was moved while pyvmm walked its tree")


def ident(st: os.stat_result) -> tuple[int, int]:
    """What names a file whatever its path: (device, inode)."""
    return st.st_dev, st.st_ino


def open_dir(name: str, dir_fd: int) -> int:
    """An fd on the directory ``name`` in ``dir_fd``; ELOOP or ENOTDIR if it is not one."""
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def open_path(path: Path) -> int:
    """An fd on the directory ``path``, a trusted path (the state root's, the user's)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[int]:
    """``open_path`` for the length of a ``with``."""
    fd = open_path(path)
    try:
        yield fd
    finally:
        os.close(fd)


def _climb(fd: int, expected: tuple[int, int]) -> int:
    """An fd on the parent of ``fd``, checked to be the directory ``expected``."""
    up = open_dir("..", fd)
    if ident(os.fstat(up)) != expected:
        os.close(up)
        raise TreeChanged()
    return up


class Entry(NamedTuple):
    """One step of ``walk``."""

    dir_fd: int  # the directory holding the entry, open for this step only
    name: str
    st: os.stat_result  # of the entry itself (lstat): a symlink is never followed
    parents: list[str]  # names from the root to dir_fd; changes with the next step
    fd: int | None  # a directory's own fd, on its second visit (after its content)


def _names(fd: int, dirs_only: bool) -> Iterator[str]:
    """The sorted names in the directory ``fd``; with ``dirs_only``, of its
    subdirectories only, told by the type the listing gives (no stat of the rest)."""
    if not dirs_only:
        return iter(sorted(os.listdir(fd)))
    with os.scandir(fd) as listing:
        return iter(sorted(e.name for e in listing if e.is_dir(follow_symlinks=False)))


def walk(root_fd: int, dirs_only: bool = False) -> Iterator[Entry]:
    """Every entry under ``root_fd``, depth first, each directory's names sorted.

    A directory is visited twice: before its content (``fd`` None) and after it (``fd``
    its own). An entry may be removed on its last visit, never a directory before it.
    A mount point is an error, not a directory to enter (or to empty). ``dirs_only``
    skips every other entry: the files of a big tree cost no ``lstat``.
    """
    cur = os.dup(root_fd)
    frames = [(os.fstat(cur), _names(cur, dirs_only))]
    parents: list[str] = []
    try:
        while frames:
            st, pending = frames[-1]
            name = next(pending, None)
            if name is None:
                frames.pop()
                if not frames:
                    break
                child, cur = cur, _climb(cur, ident(frames[-1][0]))
                try:
                    yield Entry(cur, parents.pop(), st, parents, child)
                finally:
                    os.close(child)
                continue
            st = os.lstat(name, dir_fd=cur)
            yield Entry(cur, name, st, parents, None)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != frames[0][0].st_dev:
                    raise PyvmmError(f"{name!r} is a mount point: pyvmm walks one filesystem")
                sub = open_dir(name, cur)
                if ident(os.fstat(sub)) != ident(st):
                    os.close(sub)
                    raise TreeChanged()
                os.close(cur)
                cur = sub
                parents.append(name)
                frames.append((st, _names(cur, dirs_only)))
    finally:
        os.close(cur)


def _unlink_all_but_dirs(fd: int) -> list[str]:
    """Unlink every entry of the directory ``fd`` but its subdirectories; return those.

    The listing is read whole first (as ``rm``'s fts does), then acted on in its own
    order, each entry by the type the listing gives (no stat): ext4 hashes names, and
    removing in hash order touches each directory block once, where sorted names
    cost a random block per entry (ten times slower on a real disk).
    """
    with os.scandir(fd) as listing:
        entries = list(listing)
    subdirs = []
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            subdirs.append(e.name)
            continue
        try:
            os.unlink(e.name, dir_fd=fd)
        except IsADirectoryError:  # a directory now, since it was listed
            subdirs.append(e.name)
        except FileNotFoundError:
            pass
    return subdirs


def remove_contents(dir_fd: int) -> None:
    """Empty the directory ``dir_fd``: symlinks are removed as links, never followed.

    ``rm -rf``'s way at the speed of the disk (``_unlink_all_but_dirs``), with
    ``walk``'s rules: one directory fd held, entered with ``O_NOFOLLOW``, climbed
    back through ``..`` checked, one filesystem, no recursion.
    """
    cur = os.dup(dir_fd)
    try:
        top = os.fstat(cur)
        names: list[str] = []  # from dir_fd down to cur
        idents = [ident(top)]
        pending = [_unlink_all_but_dirs(cur)]  # per level, subdirectories to empty
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    sub = open_dir(name, cur)
                except OSError as e:  # replaced by a file or a symlink since listed
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    os.unlink(name, dir_fd=cur)
                    continue
                st = os.fstat(sub)
                if st.st_dev != top.st_dev:
                    os.close(sub)
                    raise PyvmmError(f"{name!r} is a mount point: pyvmm walks one filesystem")
                os.close(cur)
                cur = sub
                names.append(name)
                idents.append(ident(st))
                pending.append(_unlink_all_but_dirs(cur))
            elif names:
                pending.pop()
                idents.pop()
                child, cur = cur, _climb(cur, idents[-1])
                os.close(child)
                os.rmdir(names.pop(), dir_fd=cur)
            else:
                return
    finally:
        os.close(cur)


def remove(name: str, dir_fd: int) -> None:
    """Remove ``name`` in ``dir_fd``, whatever it is; a directory with all it holds."""
    st = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = open_dir(name, dir_fd)
    try:
        remove_contents(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and, if it is a directory, everything under it; a failure is
    a one-line error, except FileNotFoundError when ``path`` is already gone.

    Only the last component of ``path`` may be untrusted: the directories above it
    are the state root's own.
    """
    try:
        with opened(path.parent) as parent:
            remove(path.name, parent)
    except FileNotFoundError:
        raise
    except OSError as e:  # an immutable file, a mount point: say so in one line
        raise PyvmmError(f"cannot remove {path}: {e.strerror} ({e.filename})") from None


def copy_metadata(fd: int, st: os.stat_result) -> None:
    """``st``'s owner, mode and times onto the file ``fd``."""
    os.fchown(fd, st.st_uid, st.st_gid)  # first: it clears the set-id bits
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_file(name: str, st: os.stat_result, src_dir: int, dst_dir: int, dst_name: str) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        if ident(os.fstat(src)) != ident(st):
            raise TreeChanged()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(dst_name, flags, 0o600, dir_fd=dst_dir)
        try:
            while os.sendfile(dst, src, None, 1 << 30):
                pass
            copy_metadata(dst, st)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_one(name: str, st: os.stat_result, src_dir: int, dst_dir: int, dst_name: str) -> None:
    """Copy the regular file or symlink ``name`` (``st`` its lstat) as ``dst_name``,
    a new entry of ``dst_dir``; owner, mode and times kept."""
    if stat.S_ISREG(st.st_mode):
        _copy_file(name, st, src_dir, dst_dir, dst_name)
        return
    os.symlink(os.readlink(name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
    os.chown(dst_name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
    times = (st.st_atime_ns, st.st_mtime_ns)
    os.utime(dst_name, ns=times, dir_fd=dst_dir, follow_symlinks=False)


def copy(src_fd: int, dst_fd: int) -> None:
    """Copy what the directory ``src_fd`` holds into the empty directory ``dst_fd``.

    Directories, regular files, symlinks (as links) and FIFOs keep their owners,
    modes and times, as Docker's volume copy-up does; device nodes and sockets are
    left out: a volume is a place for data.
    """
    dst = Cursor(dst_fd)
    try:
        for e in walk(src_fd):
            here = dst.goto(e.parents)
            mode = e.st.st_mode
            if e.fd is not None:  # a directory, after its content: its mtime is final
                fd = open_dir(e.name, here)
                try:
                    copy_metadata(fd, e.st)
                finally:
                    os.close(fd)
            elif stat.S_ISDIR(mode):
                os.mkdir(e.name, 0o700, dir_fd=here)
            elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                copy_one(e.name, e.st, e.dir_fd, here, e.name)
            elif stat.S_ISFIFO(mode):
                os.mkfifo(e.name, 0o600, dir_fd=here)
                fd = os.open(e.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=here)
                try:
                    copy_metadata(fd, e.st)
                finally:
                    os.close(fd)
    finally:
        dst.close()


def common_prefix(a: list[str], b: list[str]) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # a[:lo] == b[:lo] and a[:hi + 1] != b[:hi + 1]
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Cursor:
    """An fd on one directory of a tree, moved from directory to directory by names.

    Consecutive tar members, like consecutive steps of a walk, are mostly neighbours:
    moving from the last directory costs a step or two where resolving each path from
    the root would cost its whole depth, and a cursor holds one fd however deep it is.
    Every step is ``open_dir`` (no symlink followed) or a checked climb.
    """

    def __init__(self, root_fd: int, on_mkdir: Callable[[os.stat_result], None] | None = None):
        self.root = root_fd  # the caller's, and the caller closes it
        self.fd = os.dup(root_fd)
        self.names: list[str] = []
        self.idents = [ident(os.fstat(root_fd))]  # the root's, then each of names'
        self.on_mkdir = on_mkdir

    def goto(self, names: list[str], create: bool = False) -> int:
        """The fd of the directory ``names`` (from the root), valid until the next move.

        With ``create``, missing directories are made (mode 0755, as tar does for the
        directories a member implies); otherwise a missing one is FileNotFoundError.
        """
        if self.names != names:
            keep = common_prefix(self.names, names)
            if len(self.names) - keep > keep:  # fewer steps down from the root than up
                self._move(os.dup(self.root))
                del self.names[:], self.idents[1:]
            while len(self.names) > keep:
                self._move(_climb(self.fd, self.idents[-2]))
                self.names.pop()
                self.idents.pop()
            for name in names[len(self.names) :]:
                self._down(name, create)
        return self.fd

    def close(self) -> None:
        os.close(self.fd)

    def _move(self, fd: int) -> None:
        os.close(self.fd)
        self.fd = fd

    def _down(self, name: str, create: bool) -> None:
        try:
            fd = open_dir(name, self.fd)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=self.fd)
            fd = open_dir(name, self.fd)
            if self.on_mkdir:
                self.on_mkdir(os.fstat(fd))
        self._move(fd)
        self.names.append(name)
        self.idents.append(ident(os.fstat(fd)))
