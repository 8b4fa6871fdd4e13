"""A build's context: the directory COPY and ADD read, and nothing outside it.

The context is the user's directory, but the Containerfile names paths in it, and
the context holds whatever it holds (symlinks to anywhere included). So, as Docker's
builder, a source path is cleaned and refused if it leaves the context (``..``); it
is reached one component at a time from the context's fd, never through a symlink
(``fdtree.Cursor``), and a symlink found in the context is copied as a symlink, never
followed. ``.dockerignore`` (Docker's syntax: Go's ``filepath.Match`` patterns, ``**``
for any number of directories, ``!`` to take an exception, the last match winning, a
pattern matching a directory also matching what is under it) hides what it names.

COPY writes its layer itself, as Docker's builder does (no container runs): a tar
holding the destination's parent directories, with the metadata the image gives them
(``layers.lookup``), then the sources. ADD does the same, and unpacks a local tar
archive (plain or compressed) into the destination instead of copying it. The tar is
unpacked into the store like any other layer, by the same hardened extractor.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import posixpath
import re
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmm.container.image import unpack
from vmm.container.linux import fdtree
from vmm.container.store import layers
from vmm.errors import PyvmmError

IGNORE_FILE = ".dockerignore"
_GLOB = re.compile(r"[*?\[]")


def _translate(pattern: str) -> re.Pattern:
    """Go's ``filepath.Match`` with Docker's ``**``: ``*`` and ``?`` never cross a ``/``."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):  # "**/" : zero or more directories
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


class Ignore:
    """``.dockerignore``'s patterns, in order."""

    def __init__(self, text: str):
        self.patterns: list[tuple[re.Pattern, bool]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            line = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.patterns.append((_translate(line), exception))

    def __call__(self, parts: list[str]) -> bool:
        """Whether the context's path ``parts`` is ignored."""
        paths = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        ignored = False
        for regex, exception in self.patterns:
            if any(regex.fullmatch(p) for p in paths):
                ignored = not exception
        return ignored


@dataclass
class Source:
    """One COPY or ADD source, found in the context: its path there, split."""

    parts: list[str]


class ContextError(PyvmmError):
    """A COPY or ADD whose sources are not in the context as it names them."""


class Context:
    """An open build context; ``close`` it."""

    def __init__(self, path: Path):
        try:
            self.fd = fdtree.open_path(path)
        except OSError as e:
            raise PyvmmError(f"build context {path}: {e.strerror}") from None
        self.cursor = fdtree.Cursor(self.fd)
        self.ignore = Ignore(self.read(IGNORE_FILE) or "")

    def close(self) -> None:
        self.cursor.close()
        os.close(self.fd)

    def read(self, name: str) -> str | None:
        """The text of the context's top-level file ``name``, not through a symlink."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read().decode(errors="replace")

    def parent(self, parts: list[str], what: str) -> int:
        """An fd on the directory holding the context's path ``parts`` (valid until the
        next call), reached without following a symlink."""
        try:
            return self.cursor.goto(parts[:-1])
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ContextError(f"{what}: {e.filename!r} is not a directory of the "
                                   "context (a symlink is never followed)") from None  # fmt: skip
            if e.errno == errno.ENOENT:
                raise ContextError(f"{what}: no such file in the build context") from None
            raise

    def sources(self, src: str) -> list[Source]:
        """What the source ``src`` names: one path, or those its last component's
        wildcards match (sorted); refused if it leaves the context."""
        what = f"source {src!r}"
        path = posixpath.normpath(src).lstrip("/")
        if path == ".." or path.startswith("../"):
            raise ContextError(f"{what} is outside the build context")
        parts = [] if path == "." else path.split("/")
        if any(_GLOB.search(p) for p in parts[:-1]):
            raise ContextError(f"{what}: wildcards only in the last component")
        if not parts:
            return [Source([])]
        parent = self.parent(parts, what)
        if _GLOB.search(parts[-1]):
            names = [n for n in sorted(os.listdir(parent)) if fnmatch.fnmatchcase(n, parts[-1])]
        else:
            names = [parts[-1]] if _exists(parts[-1], parent) else []
        found = [Source([*parts[:-1], n]) for n in names if not self.ignore([*parts[:-1], n])]
        if not found:
            raise ContextError(f"{what}: no such file in the build context")
        return found

    def lstat(self, source: Source) -> os.stat_result:
        if not source.parts:
            return os.fstat(self.fd)
        return os.lstat(source.parts[-1], dir_fd=self.parent(source.parts, "source"))

    def open_dir(self, source: Source) -> int:
        if not source.parts:
            return os.dup(self.fd)
        return fdtree.open_dir(source.parts[-1], self.parent(source.parts, "source"))


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


class _HashingReader:
    """File data on its way into the tar, hashed into the step's cache key."""

    def __init__(self, f: BinaryIO, sha):
        self.f, self.sha = f, sha

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha.update(data)
        return data


@dataclass
class Copy:
    """One COPY or ADD at its step: sources, destination and flags, resolved."""

    sources: list[Source]
    dest: str  # absolute, in the image
    dest_is_dir: bool  # the sources go under dest (else a single file becomes dest)
    owner: tuple[int, int]
    mode: int | None  # --chmod
    unpack_archives: bool  # ADD


class LayerWriter:
    """Writes one COPY's layer tar, hashing what it copies for the cache key."""

    def __init__(self, context: Context, lowers: list[Path], out: BinaryIO):
        self.context, self.lowers = context, lowers
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self.sha = hashlib.sha256()
        self.done: set[str] = set()
        self.links: dict[tuple[int, int], str] = {}

    def close(self) -> str:
        """Finish the tar; return the hash of what was copied."""
        self.tar.close()
        return self.sha.hexdigest()

    def _record(self, t: tarfile.TarInfo, where: str) -> None:
        fields = (where, t.type.decode(), oct(t.mode), t.uid, t.gid, t.linkname, t.size)
        self.sha.update(("\0".join(map(str, fields)) + "\n").encode())

    def parents(self, parts: list[str], what: str) -> None:
        """The directories down to ``parts`` (included), each with the image's metadata
        if it has it (a new one: root's, 0755, as Docker makes it)."""
        for i in range(1, len(parts) + 1):
            name = "/".join(parts[:i])
            if name in self.done:
                continue
            st = layers.lookup(self.lowers, parts[:i])
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise ContextError(f"{what}: /{name} is not a directory in the image")
            t = tarfile.TarInfo(name)
            t.type = tarfile.DIRTYPE
            if st is None:
                t.mode, t.mtime = 0o755, int(time.time())
            else:
                t.mode, t.uid, t.gid, t.mtime = (stat.S_IMODE(st.st_mode), st.st_uid,
                                                 st.st_gid, st.st_mtime)  # fmt: skip
            self.tar.addfile(t)
            self.done.add(name)

    def add(self, copy: Copy, what: str) -> None:
        """Write ``copy``'s files."""
        dest = [p for p in posixpath.normpath(copy.dest).split("/") if p]
        self.parents(dest if copy.dest_is_dir else dest[:-1], what)
        for source in copy.sources:
            st = self.context.lstat(source)
            base = source.parts[-1] if source.parts else ""
            if stat.S_ISDIR(st.st_mode):
                self._tree(copy, source, dest)
            elif (
                copy.unpack_archives
                and stat.S_ISREG(st.st_mode)
                and self._archive(copy, source, dest, what)
            ):
                pass
            else:
                target = [*dest, base] if copy.dest_is_dir else dest
                entry = fdtree.Entry(self.context.parent(source.parts, what), base, st, [], None)
                self._entry(copy, entry, target, [base])

    def _entry(self, copy: Copy, e: fdtree.Entry, target: list[str], rel: list[str]) -> None:
        t = unpack.tarinfo(e, self.links, "/".join(target))
        if t is None:
            return
        t.uid, t.gid = copy.owner
        if copy.mode is not None and not t.issym():
            t.mode = copy.mode
        self._record(t, "/".join(rel))
        unpack.add_member(self.tar, e, t, lambda f: _HashingReader(f, self.sha))

    def _tree(self, copy: Copy, source: Source, dest: list[str]) -> None:
        """A directory source: its content goes under ``dest``, less what is ignored."""
        fd = self.context.open_dir(source)
        try:
            for e in fdtree.walk(fd):
                rel = [*e.parents, e.name]
                if e.fd is None and not self.context.ignore([*source.parts, *rel]):
                    self._entry(copy, e, [*dest, *rel], rel)
        finally:
            os.close(fd)

    def _archive(self, copy: Copy, source: Source, dest: list[str], what: str) -> bool:
        """ADD's local archive, unpacked under ``dest``; False if the file is no tar."""
        parent = self.context.parent(source.parts, what)
        fd = os.open(source.parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            try:
                archive = tarfile.open(fileobj=f, mode="r:*")
            except (tarfile.TarError, EOFError, OSError):
                return False
            with archive:
                self._members(archive, dest, what)
            f.seek(0)
            while data := f.read(1 << 16):
                self.sha.update(data)
        return True

    def _members(self, archive: tarfile.TarFile, dest: list[str], what: str) -> None:
        prefix = "/".join(dest)

        def under(name: str) -> str:
            return posixpath.join(prefix, name.lstrip("/")) if prefix else name.lstrip("/")

        try:
            for m in archive:
                m.name = under(m.name)
                if m.islnk():
                    m.linkname = under(m.linkname)
                data = archive.extractfile(m) if m.isreg() else None
                self.tar.addfile(m, data)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ContextError(f"{what}: a damaged archive ({e})") from None
