"""Unpacking layer tars: where a container runtime meets hostile input.

A layer arrives as a tar (the OCI and Docker formats agree on this) and is stored
under the sha256 of its uncompressed bytes, Docker's "diff id", so the same layer
imported twice, or shared by two images, is stored once.

This extractor is strict where ``tarfile.extractall`` is lenient: no absolute or
``..`` paths, no writing through a symlink (an entry whose parent directory is a
symlink could land anywhere on the host), hardlinks only to files already in this
layer, and no device nodes. Any bad entry fails the whole layer and the partial
directory is removed.

OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are converted to overlayfs's spelling
on the way in; ``layers.py`` explains both.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vmm.container.layers import OPAQUE, OPAQUE_XATTR, WHITEOUT
from vmm.container.state import Store, write_json
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
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {entry!r}: '..' leaves the layer")
    return parts


def _parent(dest: Path, parts: list[str], entry: str) -> Path:
    """The directory for ``parts[-1]``, created if missing; never through a symlink."""
    d = dest
    for p in parts[:-1]:
        d = d / p
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            os.mkdir(d, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise LayerError(f"layer entry {entry!r}: parent {p!r} is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise LayerError(f"layer entry {entry!r}: parent {p!r} is not a directory")
    return d


def _clear(path: Path, keep_dir: bool) -> None:
    """Make room for a new entry at ``path`` (a later tar entry replaces an earlier one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not keep_dir:
            shutil.rmtree(path)
    else:
        os.unlink(path)


def _extract_one(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, dirs: list) -> None:
    parts = _parts(m.name, m.name)
    if not parts:
        return  # the layer's root directory itself
    parent = _parent(dest, parts, m.name)
    base = parts[-1]
    if base == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT):
        hidden = base[len(WHITEOUT) :]
        if not hidden or hidden.startswith(WHITEOUT):
            raise LayerError(f"layer entry {m.name!r}: malformed whiteout")
        _clear(parent / hidden, keep_dir=False)
        os.mknod(parent / hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    path = parent / base
    _clear(path, keep_dir=m.isdir())
    if m.isdir():
        if not path.is_dir():
            os.mkdir(path, 0o700)
        dirs.append((path, m))
    elif m.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(tar.extractfile(m), out)
    elif m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        target_parts = _parts(m.linkname, m.name)
        target = _parent(dest, target_parts, m.name) / target_parts[-1] if target_parts else dest
        if not os.path.lexists(target) or os.path.isdir(target):
            raise LayerError(f"layer entry {m.name!r}: hardlink to a file outside this layer")
        os.link(target, path, follow_symlinks=False)
    elif m.isfifo():
        os.mkfifo(path, 0o600)
    else:
        raise LayerError(f"layer entry {m.name!r}: device nodes are not allowed in a layer")
    if not m.isdir():
        _set_metadata(path, m)


def _set_metadata(path: Path, m: tarfile.TarInfo) -> None:
    os.lchown(path, m.uid, m.gid)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
    os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def extract(f: BinaryIO, dest: Path) -> str:
    """Unpack the (optionally gzipped) layer tar ``f`` into ``dest``; return its diff id."""
    head = f.peek(2)[:2] if hasattr(f, "peek") else b""
    if head == b"\x1f\x8b":
        f = gzip.GzipFile(fileobj=f)
    reader = _HashingReader(f)
    dirs: list = []
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for m in tar:
                try:
                    _extract_one(tar, m, dest, dirs)
                except OSError as e:
                    raise LayerError(f"layer entry {m.name!r}: {e.strerror or e}") from None
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LayerError(f"not a readable layer tar: {reason}") from None
    # Directories last: adding entries to a directory changes its mtime.
    for path, m in reversed(dirs):
        _set_metadata(path, m)
    return "sha256:" + reader.drain()


def tar_directory(src: Path, out: BinaryIO) -> None:
    """Write ``src`` as a layer tar: sorted, owner names dropped, so the same tree
    always gives the same bytes and therefore the same digest."""

    def anonymous(t: tarfile.TarInfo) -> tarfile.TarInfo:
        t.uname = t.gname = ""
        return t

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(src)):
            tar.add(src / entry, arcname=entry, filter=anonymous)


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path``, each inode counted once."""
    seen, total = set(), 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def store_layer(
    store: Store, f: BinaryIO, verify: Callable[[str], None] | None = None
) -> tuple[str, bool]:
    """Store the layer tar ``f``; return its digest and whether it is new.

    ``verify`` is called with the digest once the layer is unpacked and before it is
    stored; it raises to refuse the layer (the importer checks blob and diff id there).

    The caller holds the store lock. The layer is unpacked into a temporary directory
    and renamed into place only when complete, so a failed import leaves nothing; one
    whose pyvmm was killed mid-way leaves a temporary directory, removed here next
    time (under the lock no other import can be using it).
    """
    store.layers.mkdir(parents=True, exist_ok=True)
    for stale in store.layers.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = store.layers / f".tmp-{os.urandom(8).hex()}"
    try:
        os.mkdir(tmp, 0o700)
        os.mkdir(tmp / "diff", 0o755)
        digest = extract(f, tmp / "diff")
        if verify is not None:
            verify(digest)
        final = store.layers / digest.removeprefix("sha256:")
        if final.exists():
            return digest, False
        write_json(tmp / "layer.json", {"digest": digest, "size": tree_size(tmp / "diff")})
        os.rename(tmp, final)
        return digest, True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
