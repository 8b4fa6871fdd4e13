"""Unpacking layer tars: where a container runtime meets hostile input.

A layer arrives as a tar (the OCI and Docker formats agree on this) and is stored
under the sha256 of its uncompressed bytes, Docker's "diff id", so the same layer
imported twice, or shared by two images, is stored once.

This extractor is strict where ``tarfile.extractall`` is lenient: no absolute or
``..`` paths, nothing under a symlinked directory, hardlinks only to regular files
already in this layer, and no device nodes; any bad entry fails the whole layer and
the partial directory is removed. And it is confined by construction, not by checks
on path strings, which later members of the same tar can make false (a directory
replaced by a symlink, a hard link to a symlink): every operation is one name
relative to a directory fd reached without following a symlink, and metadata is set
through the file's own fd (``_Layer``; docs/containers.md, "What stops a hostile
image").

OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are converted to overlayfs's spelling
on the way in; ``layers.py`` explains both.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vmm.container.image import tarstream
from vmm.container.linux import fdtree
from vmm.container.store import records
from vmm.container.store.layers import (
    OPAQUE,
    OPAQUE_XATTR,
    RECORD,
    TMP_PREFIX,
    WHITEOUT,
    LayerRecord,
)
from vmm.container.store.state import Store
from vmm.errors import PyvmmError


class LayerError(PyvmmError):
    """A layer tar that cannot be unpacked safely."""


class _HashingReader:
    """A read-only file that hashes what passes through it."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> str:
        while self.read(1 << 16):
            pass
        return self.sha.hexdigest()


def _parts(name: str, entry: str) -> list[str]:
    """Path components of a tar name, refusing any that could leave the layer."""
    if name.startswith("/"):
        raise LayerError(f"layer entry {entry!r}: absolute path")
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [p for p in parts if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {entry!r}: '..' leaves the layer")
    return parts


def _set_metadata(fd: int, m: tarstream.Member) -> None:
    """Owner, mode and mtime of ``m`` on the open file ``fd`` (chown first: it clears
    the set-id bits)."""
    os.fchown(fd, m.uid, m.gid)
    os.fchmod(fd, m.mode)
    os.utime(fd, (m.mtime, m.mtime))


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _walk_size(root_fd: int) -> int:
    """The regular files' bytes under ``root_fd``, each inode counted once."""
    seen, size = set(), 0
    for e in fdtree.walk(root_fd):
        if e.fd is None and stat.S_ISREG(e.st.st_mode) and fdtree.ident(e.st) not in seen:
            seen.add(fdtree.ident(e.st))
            size += e.st.st_size
    return size


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class _Layer:
    """One layer directory being unpacked, every operation relative to a directory fd.

    Each member's parent is reached with a ``fdtree.Cursor`` (``O_NOFOLLOW`` at every
    step) and the member itself is created, linked or removed by a single name
    relative to that fd, so no symlink, earlier or later in the tar, can take an
    operation out of the layer. A member is created with ``O_EXCL`` (or its
    ``mkdir``/``symlink``/``link``, which never follow either); only where that finds
    a name taken, by an earlier member, is the old entry removed and the creation
    tried again: one system call a member for the common case. Directories' metadata
    waits for the end (adding entries changes a directory's mtime) and is then
    applied during one fd walk of the layer's directories, to the directory inodes
    that the members created: a directory that a later member replaced is simply not
    there to be found.

    The layer's size (its regular files' bytes, each inode once) is summed as files
    are written, less the files removed by later members; only when a later member
    replaces a whole directory is it summed again by a walk of the finished layer.
    """

    def __init__(self, root_fd: int):
        self.root = root_fd
        self.dirs: dict[tuple[int, int], tarstream.Member] = {}
        self.size: int | None = 0  # None: to be summed by a walk at the end
        # Who owns a new file, unless the layer is in a set-group-id directory (whose
        # group new files take).
        root = os.fstat(root_fd)
        self.owner = (os.geteuid(), -1 if root.st_mode & stat.S_ISGID else os.getegid())
        self.fix_mode = 0o7000 | _umask()  # mode bits a new file cannot be created with
        # A directory made for a member's path, not by a member of its own, has no
        # metadata to receive, even if it reuses the inode of one removed before it.
        self.cursor = fdtree.Cursor(
            root_fd, on_mkdir=lambda st: self.dirs.pop(fdtree.ident(st), None)
        )

    def parent(self, parts: list[str], entry: str, create: bool = True) -> int:
        """The fd of the directory holding ``parts[-1]``; never reached via a symlink."""
        try:
            return self.cursor.goto(parts[:-1], create)
        except OSError as e:
            what = {errno.ELOOP: "a symlink", errno.ENOTDIR: "not a directory"}.get(e.errno)
            if what is None:
                raise
            raise LayerError(f"layer entry {entry!r}: parent {e.filename!r} is {what}") from None

    def add(self, tar: tarstream.Reader, m: tarstream.Member) -> None:
        parts = _parts(m.name, m.name)
        if not parts:
            return  # the layer's root directory itself
        if m.type == tarstream.LNK:
            self._link(m, parts)
            return
        parent = self.parent(parts, m.name)
        base = parts[-1]
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
                return
            hidden = base[len(WHITEOUT) :]
            if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT):
                raise LayerError(f"layer entry {m.name!r}: malformed whiteout")
            self._clear(parent, hidden)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
            return
        if m.isreg():
            # Created with its permission bits (less the umask's): where the owner is
            # already this process's and no bit is missing, no fchown or fchmod.
            mode = m.mode & 0o777
            try:
                fd = os.open(base, _NEW_FILE, mode, dir_fd=parent)
            except FileExistsError:
                fd = self._create(
                    parent, base, lambda: os.open(base, _NEW_FILE, mode, dir_fd=parent)
                )
            try:
                tar.write_data(fd)
                if m.uid != self.owner[0] or m.gid != self.owner[1]:
                    _set_metadata(fd, m)
                else:
                    if m.mode & self.fix_mode:
                        os.fchmod(fd, m.mode)
                    os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)
            if self.size is not None:
                self.size += m.size
        elif m.type == tarstream.DIR:
            try:
                os.mkdir(base, 0o700, dir_fd=parent)
            except FileExistsError:  # an earlier member's: a directory stays, as with tar
                if not stat.S_ISDIR(os.lstat(base, dir_fd=parent).st_mode):
                    self._clear(parent, base)
                    os.mkdir(base, 0o700, dir_fd=parent)
            self.dirs[fdtree.ident(os.lstat(base, dir_fd=parent))] = m
        elif m.type == tarstream.SYM:
            self._create(parent, base, lambda: os.symlink(m.linkname, base, dir_fd=parent))
            os.chown(base, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
        elif m.type == tarstream.FIFO:
            self._create(parent, base, lambda: os.mkfifo(base, 0o600, dir_fd=parent))
            self._set_metadata_of(base, parent, m)
        else:
            raise LayerError(f"layer entry {m.name!r}: device nodes are not allowed in a layer")

    def _create(self, parent: int, name: str, make: Callable[[], int | None]) -> int | None:
        """``make()``, which creates ``name`` in ``parent`` without following it; where
        the name is taken by an earlier member, that goes first (tar's "replace")."""
        try:
            return make()
        except FileExistsError:
            self._clear(parent, name)
            return make()

    def _link(self, m: tarstream.Member, parts: list[str]) -> None:
        """A hard link, only ever to a regular file already unpacked in this layer."""
        target = _parts(m.linkname, m.name)
        refused = LayerError(
            f"layer entry {m.name!r}: hardlink target {m.linkname!r} is not a regular file "
            "of this layer"
        )
        try:
            source = os.dup(self.parent(target, m.name, create=False)) if target else None
        except (FileNotFoundError, LayerError):
            source = None
        if source is None:
            raise refused
        try:
            try:
                if not stat.S_ISREG(os.lstat(target[-1], dir_fd=source).st_mode):
                    raise refused
            except FileNotFoundError:
                raise refused from None
            parent = self.parent(parts, m.name)
            # No AT_SYMLINK_FOLLOW: the link is to the name itself, checked above.
            self._create(
                parent,
                parts[-1],
                lambda: os.link(
                    target[-1],
                    parts[-1],
                    src_dir_fd=source,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                ),
            )
        finally:
            os.close(source)
        self._set_metadata_of(parts[-1], parent, m)

    @staticmethod
    def _set_metadata_of(name: str, parent: int, m: tarstream.Member) -> None:
        """Metadata on the file ``name`` in ``parent``, refused if it is a symlink."""
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
        )
        try:
            _set_metadata(fd, m)
        finally:
            os.close(fd)

    def _clear(self, parent: int, name: str) -> None:
        """Make room for a new entry (a later member replaces an earlier one).

        Only a child of the cursor's directory goes, so the cursor stays valid."""
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            return
        if self.size is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            self.size -= st.st_size
        elif stat.S_ISDIR(st.st_mode):
            self.size = None
        fdtree.remove(name, parent)

    def finish(self) -> int:
        """Apply the directories' metadata, deepest first; return the layer's size."""
        for e in fdtree.walk(self.root, dirs_only=True):
            m = self.dirs.get(fdtree.ident(e.st)) if e.fd is not None else None
            if m:
                _set_metadata(e.fd, m)
        if self.size is None:
            self.size = _walk_size(self.root)
        return self.size

    def close(self) -> None:
        self.cursor.close()


def extract(
    f: BinaryIO, dest: Path, on_member: Callable[[str], None] | None = None
) -> tuple[str, int]:
    """Unpack the (optionally gzipped) layer tar ``f`` into ``dest``; return its diff id
    and its size.

    ``on_member`` sees each member's name before it is unpacked, and may raise to stop."""
    head = f.peek(2)[:2] if hasattr(f, "peek") else b""
    if head == b"\x1f\x8b":
        f = gzip.GzipFile(fileobj=f)
    reader = _HashingReader(f)
    root = fdtree.open_path(dest)
    layer = _Layer(root)
    try:
        tar = tarstream.Reader(reader)
        for m in tar:
            if on_member is not None:
                on_member(m.name)
            try:
                layer.add(tar, m)
            except OSError as e:
                raise LayerError(f"layer entry {m.name!r}: {e.strerror or e}") from None
            except (OverflowError, ValueError) as e:  # an owner or mtime out of range
                raise LayerError(f"layer entry {m.name!r}: {e}") from None
        size = layer.finish()
    except (tarstream.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LayerError(f"not a readable layer tar: {reason}") from None
    finally:
        layer.close()
        os.close(root)
    return "sha256:" + reader.drain(), size


def tarinfo(
    e: fdtree.Entry, links: dict[tuple[int, int], str], name: str | None = None
) -> tarfile.TarInfo | None:
    """The tar header of one walked entry (as ``TarFile.gettarinfo`` would make it, owner
    names dropped), named ``name`` or its path in the walk; None for a socket, which
    tar cannot hold."""
    st = e.st
    t = tarfile.TarInfo("/".join([*e.parents, e.name]) if name is None else name)
    t.mode, t.uid, t.gid, t.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime
    if stat.S_ISREG(st.st_mode):
        if st.st_nlink > 1 and fdtree.ident(st) in links:
            t.type, t.linkname = tarfile.LNKTYPE, links[fdtree.ident(st)]
        else:
            links[fdtree.ident(st)] = t.name
            t.size = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        t.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        t.type, t.linkname = tarfile.SYMTYPE, os.readlink(e.name, dir_fd=e.dir_fd)
    elif stat.S_ISFIFO(st.st_mode):
        t.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        t.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        t.devmajor, t.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None
    return t


def _oci_whiteout(e: fdtree.Entry, t: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    """Turn a stored layer's overlayfs spelling back into the OCI one (``layers.py``):
    a 0/0 character device into an empty ``.wh.NAME``, and after an opaque directory's
    header its ``.wh..wh..opq``."""
    if t.ischr() and t.devmajor == t.devminor == 0:
        *parent, name = t.name.split("/")
        t.name, t.type, t.mode = "/".join([*parent, WHITEOUT + name]), tarfile.REGTYPE, 0
    elif t.isdir():
        fd = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=e.dir_fd)
        try:
            opaque = os.getxattr(fd, OPAQUE_XATTR) == b"y"
        except OSError:
            opaque = False
        finally:
            os.close(fd)
        if opaque:
            tar.addfile(t)
            t = tarfile.TarInfo(f"{t.name}/{OPAQUE}")
            t.mtime = e.st.st_mtime
    tar.addfile(t)


def tar_directory(src: Path, out: BinaryIO, oci_whiteouts: bool = False) -> None:
    """Write ``src`` as a layer tar: sorted, owner names dropped, so the same tree
    always gives the same bytes and therefore the same digest. ``oci_whiteouts``: a
    stored layer, whose deletions are written as the OCI format spells them."""
    links: dict[tuple[int, int], str] = {}
    with (
        fdtree.opened(src) as root,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for e in fdtree.walk(root):
            t = None if e.fd is not None else tarinfo(e, links)
            if t is not None and oci_whiteouts and (t.ischr() or t.isdir()):
                _oci_whiteout(e, t, tar)
                continue
            if t is not None:
                add_member(tar, e, t)


def add_member(
    tar: tarfile.TarFile,
    e: fdtree.Entry,
    t: tarfile.TarInfo,
    wrap: Callable[[BinaryIO], BinaryIO] | None = None,
) -> None:
    """Add the walked entry ``e`` to ``tar`` with the header ``t``: a regular file's
    data read through its own fd, opened without following a symlink and checked to
    be the file walked (``wrap``, if given, sees the data on its way)."""
    if not t.isreg():
        tar.addfile(t)
        return
    fd = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=e.dir_fd)
    with os.fdopen(fd, "rb") as f:
        if fdtree.ident(os.fstat(fd)) != fdtree.ident(e.st):
            raise fdtree.TreeChanged()
        tar.addfile(t, wrap(f) if wrap else f)


def store_layer(
    store: Store,
    f: BinaryIO,
    verify: Callable[[str], None] | None = None,
    on_member: Callable[[str], None] | None = None,
) -> tuple[str, bool]:
    """Store the layer tar ``f``; return its digest and whether it is new.

    ``verify`` is called with the digest once the layer is unpacked and before it is
    stored; it raises to refuse the layer (the importer checks blob and diff id there).

    The caller holds the store lock. The layer is unpacked into a temporary directory
    and renamed into place only when complete, so a failed import leaves nothing; one
    whose pyvmm was killed mid-way leaves a temporary directory, removed here next
    time (under the lock no other import can be using it). A temporary directory that
    cannot be removed is left for later: it never stands in the way of an import.
    """
    store.layers.mkdir(parents=True, exist_ok=True)
    for stale in store.layers.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError, PyvmmError):
            fdtree.remove_tree(stale)
    tmp = store.layers / f"{TMP_PREFIX}{os.urandom(8).hex()}"
    try:
        os.mkdir(tmp, 0o700)
        os.mkdir(tmp / "diff", 0o755)
        digest, size = extract(f, tmp / "diff", on_member)
        if verify is not None:
            verify(digest)
        final = store.layers / digest.removeprefix("sha256:")
        if final.exists():
            return digest, False
        records.write(tmp / RECORD, LayerRecord(digest=digest, size=size))
        os.rename(tmp, final)
        return digest, True
    finally:
        with contextlib.suppress(OSError, PyvmmError):
            fdtree.remove_tree(tmp)
