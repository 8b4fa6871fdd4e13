"""Image layers in the store, and how overlayfs stacks them.

Each layer is a directory, ``layers/sha256/<hex>/diff``, unpacked once by
``unpack.py`` and shared by every image that contains it. overlayfs mounts them as
read-only ``lowerdir``s, topmost first, under a container's writable ``upperdir``.

Deletions need a representation, because a lower layer cannot be changed. The OCI
image format writes a file ``.wh.NAME`` to hide NAME in the layers below, and
``.wh..wh..opq`` in a directory to hide all of that directory's lower content;
overlayfs spells the same things as a 0/0 character device named NAME and the xattr
``trusted.overlay.opaque=y`` on the directory. Layers are stored in overlayfs's
spelling, so they can be mounted as they are; a container's upper directory uses it
too, which is what ``diff`` reads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vmm.container.linux import fdtree
from vmm.container.store import records
from vmm.container.store.records import DIGEST, Broken, Digest, check_digest
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


RECORD = "layer.json"
SOURCES = "sources.json"
# How many registry copies of one layer are remembered (the newest kept).
MAX_SOURCES = 16
TMP_PREFIX = ".tmp-"  # a layer being unpacked (``unpack.store_layer``)


@dataclass
class LayerRecord:
    """A stored layer's ``layer.json``: its size, summed once when it was unpacked."""

    digest: Digest
    size: int


@dataclass
class BlobSource:
    """A registry repository known to hold this layer as a blob, compressed: a push to
    that registry mounts it from there (or finds it already there) instead of uploading
    it, as Docker's distribution metadata lets it. ``diff_id`` is the sha256 of that
    blob uncompressed: the layer's own name, unless pyvmm made the tar itself (a push
    writes its own tar of the stored tree, which need not be the tar it came from)."""

    registry: str
    repository: str
    digest: Digest
    size: int
    media_type: str
    diff_id: Digest


@dataclass
class LayerSources:
    """A stored layer's ``sources.json``: where registries hold it, newest last."""

    sources: list[BlobSource]


def _dir(store: Store, digest: str) -> Path:
    """The layer's directory; ``digest`` is checked, so it can only name one in the store."""
    return store.layers / check_digest(digest).removeprefix("sha256:")


def layer_dir(store: Store, digest: str) -> Path:
    """The lower directory overlayfs mounts for the layer ``digest``."""
    return _dir(store, digest) / "diff"


def load(store: Store, digest: str) -> LayerRecord | Broken:
    return records.load(_dir(store, digest) / RECORD, LayerRecord, digest=digest)


def size(store: Store, digest: str) -> int | None:
    """The layer's size, or None if its record is broken."""
    record = load(store, digest)
    return None if isinstance(record, Broken) else record.size


def sources(store: Store, digest: str) -> list[BlobSource]:
    """The registry copies known of layer ``digest`` (none if its record is broken)."""
    record = records.load(_dir(store, digest) / SOURCES, LayerSources)
    return [] if isinstance(record, Broken) else record.sources


def add_source(store: Store, digest: str, source: BlobSource) -> None:
    """Remember ``source`` for layer ``digest``. The caller holds the store lock."""
    if not _dir(store, digest).is_dir():
        return  # removed meanwhile: nothing to remember it for
    known = [s for s in sources(store, digest) if s != source] + [source]
    records.write(_dir(store, digest) / SOURCES, LayerSources(known[-MAX_SOURCES:]))


def collect(store: Store, keep: set[str]) -> None:
    """Remove every layer not in ``keep``, and what imports cut short left behind
    (temporary directories). The caller holds the store lock, so no import is under way.

    Only entries in the store's own naming are touched: a layer is its digest's hex,
    a temporary directory ``.tmp-``; anything else there is not pyvmm's to remove.
    """
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(store.layers):
            digest = f"sha256:{entry}"
            if entry.startswith(TMP_PREFIX) or (DIGEST.fullmatch(digest) and digest not in keep):
                with contextlib.suppress(FileNotFoundError):
                    fdtree.remove_tree(store.layers / entry)


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# What a lower layer holds at a directory of the upper one (see ``_Lower``).
_ABSENT, _HIDDEN, _DIR, _OPAQUE_DIR = range(4)


class _Lower:
    """One lower layer, followed alongside a walk of the upper directory.

    ``levels[i]`` says what the layer holds at the walk's ``parents[: i + 1]``: nothing
    (look further down), something that hides everything below it (a whiteout, a
    file, or nothing under an opaque directory), or a directory, opaque or not.
    """

    def __init__(self, root_fd: int):
        self.cursor = fdtree.Cursor(root_fd)
        self.levels: list[int] = []
        self.asked: list[str] = []  # the parents that levels describe

    def at(self, parents: list[str]) -> int:
        """What the layer holds at the directory ``parents``."""
        del self.levels[fdtree.common_prefix(self.asked, parents) :]
        self.asked = list(parents)
        while len(self.levels) < len(parents):
            here = parents[: len(self.levels) + 1]
            above = self.levels[-1] if self.levels else _DIR
            st = self._lstat(here[:-1], here[-1]) if above >= _DIR else None
            if above < _DIR:
                self.levels.append(above)
            elif st is None:
                self.levels.append(_HIDDEN if above == _OPAQUE_DIR else _ABSENT)
            elif not stat.S_ISDIR(st.st_mode):
                self.levels.append(_HIDDEN)
            else:
                self.levels.append(_OPAQUE_DIR if self._opaque(here) else _DIR)
        return self.levels[-1] if parents else _DIR

    def shows(self, parents: list[str], name: str) -> bool | None:
        """Whether the layer shows ``parents/name`` (None: it leaves that to the layers
        below)."""
        here = self.at(parents)
        if here < _DIR:
            return None if here == _ABSENT else False
        st = self._lstat(parents, name)
        if st is None:
            return False if here == _OPAQUE_DIR else None
        return not is_whiteout(st)

    def _lstat(self, parents: list[str], name: str) -> os.stat_result | None:
        try:
            return os.lstat(name, dir_fd=self.cursor.goto(parents))
        except FileNotFoundError:
            return None

    def _opaque(self, parents: list[str]) -> bool:
        with contextlib.suppress(OSError):
            return os.getxattr(self.cursor.goto(parents), OPAQUE_XATTR) == b"y"
        return False


def _opened(stack: contextlib.ExitStack, lowers: list[Path]) -> list[_Lower]:
    """Each of ``lowers`` as a ``_Lower``, closed with ``stack``."""
    below = []
    for path in lowers:
        lower = _Lower(stack.enter_context(fdtree.opened(path)))
        stack.callback(lower.cursor.close)
        below.append(lower)
    return below


def _showing(stack: contextlib.ExitStack, lowers: list[Path], parts: list[str]) -> _Lower | None:
    """The layer of ``lowers`` (topmost first) whose entry at ``parts`` the overlay
    shows, or None if it shows nothing there."""
    for lower in _opened(stack, lowers):
        shown = lower.shows(parts[:-1], parts[-1])
        if shown is not None:
            return lower if shown else None
    return None


def lookup(lowers: list[Path], parts: list[str]) -> os.stat_result | None:
    """The lstat of what the overlay of ``lowers`` (topmost first) shows at the path
    ``parts`` (not empty), or None if it shows nothing there: what a build step that
    writes its layer itself (COPY) needs to know of the image it adds to."""
    with contextlib.ExitStack() as stack:
        lower = _showing(stack, lowers, parts)
        return lower._lstat(parts[:-1], parts[-1]) if lower else None


def diff(upper: Path, lowers: list[Path]) -> list[tuple[str, str]]:
    """Docker's ``diff``: sorted ('A'|'C'|'D', path) for each entry of the writable layer.

    Everything in the upper directory was added or changed by the container; a
    whiteout there is a deletion; an entry the lower layers (topmost first) show is a
    change. The upper directory is the container's to shape, so it is walked by fd.
    """
    changes = []
    with contextlib.ExitStack() as stack:
        below = _opened(stack, lowers)
        for e in fdtree.walk(stack.enter_context(fdtree.opened(upper))):
            if e.fd is not None:
                continue
            path = "/" + "/".join([*e.parents, e.name])
            if is_whiteout(e.st):
                changes.append(("D", path))
                continue
            shown = next(
                (s for s in (b.shows(e.parents, e.name) for b in below) if s is not None), False
            )
            changes.append(("C" if shown else "A", path))
    return sorted(changes, key=lambda c: c[1])


def read_file(tops: list[Path], parts: list[str], limit: int) -> bytes | None:
    """The regular file the overlay of ``tops`` (topmost first: a container's upper
    directory, then its image's layers) shows at the path ``parts``, or None if it
    shows none there: what a container's ``/etc/passwd`` holds, read without mounting
    anything.

    The layers are the image's (untrusted): every step is a directory fd, a symlink is
    not followed (refused), nor is anything but a regular file read, and at most
    ``limit`` bytes."""
    path = "/" + "/".join(parts)
    with contextlib.ExitStack() as stack:
        layer = _showing(stack, tops, parts)
        if layer is None:
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, dir_fd=layer.cursor.goto(parts[:-1]))
        except OSError as e:
            why = "is a symbolic link (not followed)" if e.errno == errno.ELOOP else e.strerror
            raise PyvmmError(f"{path} in the container: {why}") from None
        stack.callback(os.close, fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # (a directory opens, then fails reads)
            raise PyvmmError(f"{path} in the container is not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise PyvmmError(f"{path} in the container is larger than {limit} bytes")
        return data
