"""Where an imported image's bytes come from, and how they are read: verified, bounded.

The import source is opened once with ``O_PATH`` and ``fstat``'ed before anything
reads it, so a FIFO, a device or a socket is a one-line error rather than a hang or an
endless read (an ``O_PATH`` open reads nothing, has no side effects and never blocks);
what is read is then reopened through that very descriptor, never looked up again.

Inside an image layout (OCI, or ``docker save``) every file is named by the layout's
own documents, so every name is untrusted. In a directory, names are resolved one
component at a time from the layout's directory descriptor with ``O_NOFOLLOW``: a
blob that is a symlink, or sits under one, is refused, wherever it points. In a tar,
files are the archive's members, read from the archive and never from the host; a
symlink member is resolved among the archive's own names, as containerd's importer
does (``docker save`` links a layer repeated in one image to its first copy), and one
that leaves the archive is refused.

A content-addressed file is read through ``Blob``, which hashes and counts the bytes
as they pass, so a layer is verified while it is unpacked, never held in memory
whole, and a blob longer than its descriptor says is cut off at that length.
"""

from __future__ import annotations

import abc
import errno
import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
from typing import BinaryIO

from vmm.container.image.imagespec import ImageError

# The registries' bound on a manifest (distribution's maxManifestBodySize); an index,
# a manifest or a config larger than this is not an image pyvmm will parse.
MAX_DOCUMENT = 4 << 20
# How many in-archive symlinks one name may go through (a loop ends here).
MAX_LINKS = 8
# A directory on the way to a layout's file: looked up in, never read, never a symlink.
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFLNK: "symlink",
    stat.S_IFDIR: "directory",
}


def kind(mode: int) -> str:
    """What a file is, in words, for an error message."""
    return _KINDS.get(stat.S_IFMT(mode), "regular file")


def open_source(path: str | os.PathLike) -> tuple[int, bool]:
    """Open the import source once: (a read descriptor, whether it is a directory).

    Anything but a directory or a regular file is refused before a byte is read.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageError(f"image source {os.fsdecode(path)} does not exist") from None
    except OSError as e:
        raise ImageError(f"image source {os.fsdecode(path)}: {e.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise ImageError(
                f"image source {os.fsdecode(path)} is a {kind(mode)}, "
                "not a directory or a tar (plain or gzip)"
            )
        # The same file again, not the same name: /proc/self/fd/N is the open file.
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC), stat.S_ISDIR(mode)
    finally:
        os.close(fd)


class Blob(io.RawIOBase):
    """A file read as the blob a descriptor names: hashed and counted as it is read.

    Reading past ``size`` fails at once; reaching the end with other bytes than
    ``digest`` names fails there. Either is left as None where nothing is known
    (``docker save``'s legacy layer paths name no digest).
    """

    def __init__(self, f: BinaryIO, label: str, digest: str | None, size: int | None):
        super().__init__()
        self.f, self.label, self.digest, self.size = f, label, digest, size
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.f.readinto(buf)
        if not n:
            self.check()
            return 0
        self.sha.update(memoryview(buf)[:n])
        self.count += n
        if self.size is not None and self.count > self.size:
            raise ImageError(f"{self.label}: longer than the {self.size} bytes its descriptor says")
        return n

    def check(self) -> None:
        """Fail unless what was read is the whole blob its descriptor names."""
        if self.size is not None and self.count != self.size:
            raise ImageError(
                f"{self.label}: {self.count} bytes where its descriptor gives {self.size}"
            )
        actual = "sha256:" + self.sha.hexdigest()
        if self.digest is not None and actual != self.digest:
            raise ImageError(
                f"{self.label}: digest mismatch: expected {self.digest}, actual {actual}"
            )

    def close(self) -> None:
        self.f.close()
        super().close()


def finish(f: io.BufferedReader) -> None:
    """Read the rest of a blob opened by ``Layout.blob`` and check it whole."""
    while f.read(1 << 16):
        pass
    f.raw.check()


def _parts(name: str) -> list[str]:
    """The components of a name the layout's documents give, refused if it could leave."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise ImageError(f"image layout refers to {name!r}, outside the layout")
    return parts


class Layout(abc.ABC):
    """The files of an image layout; subclasses say where they live."""

    @abc.abstractmethod
    def open(self, name: str) -> BinaryIO:
        """The regular file ``name`` inside the layout, open for reading."""

    @abc.abstractmethod
    def has(self, name: str) -> bool:
        """Whether the layout has a file ``name`` (a format's marker file)."""

    def blob(
        self, name: str, label: str, digest: str | None = None, size: int | None = None
    ) -> io.BufferedReader:
        """``name`` opened as a ``Blob``, buffered (the unpacker peeks at its magic)."""
        return io.BufferedReader(Blob(self.open(name), f"{label} {name}", digest, size), 1 << 16)

    def document(
        self, name: str, label: str, digest: str | None = None, size: int | None = None
    ) -> object:
        """The JSON document ``name``: bounded, verified, parsed."""
        with self.blob(name, label, digest, size) as f:
            data = f.read(MAX_DOCUMENT + 1)
            if len(data) > MAX_DOCUMENT:
                raise ImageError(f"{label} {name} is larger than {MAX_DOCUMENT >> 20} MiB")
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise ImageError(f"{label} {name} is not JSON") from None


class DirLayout(Layout):
    """A layout that is a directory: every name resolved beneath it, no symlink followed."""

    def __init__(self, fd: int):
        self.fd = fd

    def has(self, name: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def open(self, name: str) -> BinaryIO:
        *dirs, leaf = _parts(name)
        opened: list[int] = []
        try:
            at = self.fd
            for d in dirs:
                at = os.open(d, _DIR, dir_fd=at)
                opened.append(at)
            # O_NONBLOCK: a FIFO opens without waiting for a writer, and is refused below.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(leaf, flags, dir_fd=at)
        except FileNotFoundError:
            raise ImageError(f"image layout has no file {name}") from None
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ImageError(
                    f"image layout: {name} is or goes through a symlink or a non-directory; "
                    "blobs must be regular files inside the layout"
                ) from None
            raise ImageError(f"image layout: {name}: {e.strerror}") from None
        finally:
            for d in opened:
                os.close(d)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise ImageError(f"image layout: {name} is a {kind(mode)}, not a regular file")
        return os.fdopen(fd, "rb")


class TarLayout(Layout):
    """A layout that is a tar (``docker save``, an OCI archive): files are its members."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        # A later member of the same name replaces an earlier one, as when unpacking.
        self.members = {posixpath.normpath(m.name): m for m in tar.getmembers()}

    def has(self, name: str) -> bool:
        return name in self.members

    def _member(self, name: str) -> tarfile.TarInfo:
        key = "/".join(_parts(name))
        for _ in range(MAX_LINKS):
            m = self.members.get(key)
            if m is None:
                raise ImageError(f"image archive has no file {name}")
            if m.isreg():
                return m
            if not m.issym():
                raise ImageError(f"image archive: {name} is not a regular file")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(key), m.linkname))
            if m.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise ImageError(
                    f"image archive: {name} is a symlink out of the archive ({m.linkname})"
                )
            key = target
        raise ImageError(f"image archive: {name}: too many levels of symlinks")

    def open(self, name: str) -> BinaryIO:
        return self.tar.extractfile(self._member(name))
