"""Importing images from what a student is likely to have at hand.

- a directory holding a root filesystem (one layer);
- a tar of a root filesystem, plain or gzip (one layer);
- an OCI image layout, as a directory or a tar (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``);
- a ``docker save`` tar, through its legacy ``manifest.json`` (older and newer Docker
  both write it; newer Docker adds an OCI index, read when the legacy file is absent).

An image from a layout is verified link by link, as containerd does: the manifest
against the index's descriptor, the config against the manifest's, each layer blob
against its descriptor while it is unpacked, and the sha256 of each unpacked tar (the
extractor computes it anyway: it is the layer's name in the store) against the
config's ``diff_ids``. ``docker save``'s layers name no digest of their own: the
``diff_ids`` check is theirs. Every document is type-checked (``imagespec.py``).

Nothing of a failed import stays (``_Import``): every layer it stored is removed again
on any exception, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import posixpath
import signal
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vmm.container.image import imagespec, unpack
from vmm.container.image.images import ImageRecord, RunDefaults
from vmm.container.image.imagespec import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    SHA256,
    Descriptor,
    ImageError,
)
from vmm.container.image.layout import DirLayout, Layout, TarLayout, finish, open_source
from vmm.container.linux.fdtree import remove_tree
from vmm.container.store import records
from vmm.container.store.names import split_image_ref
from vmm.container.store.state import Store

# image-index.md "platform": the (os, architecture) an index entry is chosen for.
HOST = ("linux", "amd64")
# What a damaged compressed or plain tar raises while tarfile reads its members.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _blob_path(digest: str) -> str:
    """image-layout.md: a blob's path is its digest's algorithm and hex."""
    return "blobs/" + digest.replace(":", "/", 1)


def _named_digest(name: str) -> str | None:
    """The digest a ``docker save`` file's name gives it, if it is content-addressed:
    ``blobs/sha256/<hex>`` (Docker 25+) or ``<hex>.json`` (the legacy config)."""
    path = posixpath.normpath(name)
    hexdigest = path.removeprefix("blobs/sha256/").removesuffix(".json")
    if hexdigest != path and "/" not in hexdigest and SHA256.fullmatch(hexdigest):
        return f"sha256:{hexdigest}"
    return None


def _manifest_descriptor(files: Layout) -> Descriptor:
    """The image's manifest, through index.json and any nested index: linux/amd64's
    where the index lists several platforms, else the first."""
    entries = imagespec.index(files.document("index.json", "index"), "index index.json")
    while True:
        exact = [d for d, p in entries if (p.get("os"), p.get("architecture")) == HOST]
        desc = (exact or [d for d, _ in entries])[0]
        if desc.media_type not in INDEX_TYPES:
            break
        name = _blob_path(desc.digest)
        doc = files.document(name, "index", desc.digest, desc.size)
        entries = imagespec.index(doc, f"index {name}")
    if desc.media_type is not None and desc.media_type not in MANIFEST_TYPES:
        raise ImageError(f"index: unsupported manifest media type {desc.media_type!r}")
    return desc


class _Import:
    """One import under way: the store it adds to, and how to take it all back.

    Entered under the store lock, so every layer directory that appears in the store
    meanwhile is this import's; on any exception they are all removed again.

    Ctrl-C raises KeyboardInterrupt as usual, and is also remembered: CPython clears
    an exception raised inside a file object's finalizer, and the tar reader leaves
    one file object per member to its finalizer, so an interrupt landing there would
    vanish and the import would go on to store the image. Each layer checks before it
    is stored, and the image before its record is written.
    """

    def __init__(self, store: Store, image_dir: Path):
        self.store = store
        self.image_dir = image_dir
        self.interrupted = False

    def __enter__(self) -> _Import:
        self.layers_before = _entries(self.store.layers)
        self.made_dir = not self.image_dir.exists()
        self.previous = signal.getsignal(signal.SIGINT)
        if callable(self.previous):  # Python's handler (or the CLI's); not SIG_IGN
            try:
                signal.signal(signal.SIGINT, self._sigint)
            except ValueError:  # not the main thread, where signals are not handled
                self.previous = None
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is not None:
                self._undo()
        finally:
            if callable(self.previous):
                signal.signal(signal.SIGINT, self.previous)

    def _sigint(self, signum: int, frame) -> None:
        self.interrupted = True
        self.previous(signum, frame)

    def check_interrupt(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt

    def _undo(self) -> None:
        """Remove every layer directory (or temporary one) that appeared since the
        import began, and the image's directory if the import made it.

        SIGINT and SIGTERM wait until this is done: a second Ctrl-C must not leave
        half a layer.
        """
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for entry in _entries(self.store.layers) - self.layers_before:
                remove_tree(self.store.layers / entry)
            if self.made_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(self.image_dir)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def store_layer(
        self,
        f: BinaryIO,
        verify: Callable[[str], None] | None = None,
        on_member: Callable[[str], None] | None = None,
    ) -> str:
        """Unpack the layer tar ``f`` into the store; ``verify`` its digest first."""

        def checked(digest: str) -> None:
            self.check_interrupt()
            if verify is not None:
                verify(digest)

        return unpack.store_layer(self.store, f, checked, on_member)[0]

    def store_blob(
        self, files: Layout, i: int, name: str, want: Descriptor | None, diff_id: str
    ) -> str:
        """Unpack layer ``i`` into the store, verified: the blob while it is read, then
        the tar's sha256 against ``diff_id``, both before the layer is stored."""
        label = f"layer {i}"
        digest = want.digest if want else _named_digest(name)
        with files.blob(name, label, digest, want.size if want else None) as f:

            def verify(actual: str) -> None:
                finish(f)
                if actual != diff_id:
                    raise ImageError(
                        f"{label} {name}: diff_id mismatch: expected {diff_id}, actual {actual}"
                    )

            try:
                return self.store_layer(f, verify)
            except unpack.LayerError:
                # Bytes that are not the blob named explain why they did not unpack.
                finish(f)
                raise

    def from_layout(self, files: Layout) -> tuple[list[str], dict]:
        """Store a docker-save or OCI layout's layers; return their digests and the
        image's run defaults."""
        if files.has("manifest.json"):
            config_name, names = imagespec.docker_manifest(
                files.document("manifest.json", "manifest"), "manifest manifest.json"
            )
            descs: list[Descriptor | None] = [None] * len(names)
            doc = files.document(config_name, "config", _named_digest(config_name))
        elif files.has("index.json"):
            desc = _manifest_descriptor(files)
            name = _blob_path(desc.digest)
            config_desc, layer_descs = imagespec.manifest(
                files.document(name, "manifest", desc.digest, desc.size), f"manifest {name}"
            )
            config_name = _blob_path(config_desc.digest)
            doc = files.document(config_name, "config", config_desc.digest, config_desc.size)
            descs, names = layer_descs, [_blob_path(d.digest) for d in layer_descs]
        else:
            raise ImageError("image layout has neither manifest.json nor index.json")
        config = imagespec.image_config(doc, f"config {config_name}")
        if len(names) != len(config.diff_ids):
            raise ImageError(
                f"image lists {len(names)} layer(s) but its config "
                f"{len(config.diff_ids)} diff_id(s)"
            )
        layers = zip(names, descs, config.diff_ids, strict=True)
        digests = [self.store_blob(files, i, *layer) for i, layer in enumerate(layers)]
        return digests, config.defaults

    def layers(self, source: Path, fd: int, is_dir: bool) -> tuple[list[str], dict]:
        """Store the layers of ``source`` (open as ``fd``); return their digests and
        the image's run defaults."""
        if is_dir:
            files = DirLayout(fd)
            if files.has("oci-layout"):
                return self.from_layout(files)
            with tempfile.TemporaryFile(dir=self.store.root) as tmp:
                unpack.tar_directory(source, tmp)
                tmp.seek(0)
                return [self.store_layer(tmp)], {}
        with os.fdopen(os.dup(fd), "rb") as f:
            # Most tars are a rootfs: unpacked as one layer in one pass, which stops
            # where a layout's marker shows it is not one. Anything else (a layout, a
            # damaged tar) is read again from the start, its members listed first.
            try:
                return [self.store_layer(f, on_member=_not_a_layout)], {}
            except (_Layout, unpack.LayerError):
                f.seek(0)
            try:
                tar = tarfile.open(fileobj=f, mode="r:*")
            except tarfile.ReadError:
                raise ImageError(f"{source}: not a directory or a tar (plain or gzip)") from None
            with tar:
                try:
                    files = TarLayout(tar)
                except _ARCHIVE_ERRORS as e:
                    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                    raise ImageError(f"{source}: truncated or corrupt tar ({reason})") from None
                if any(files.has(marker) for marker in _LAYOUT_MARKERS):
                    return self.from_layout(files)
            f.seek(0)
            return [self.store_layer(f)], {}


# The files whose presence at its top makes a tar an image layout (``Layout.has``).
_LAYOUT_MARKERS = ("manifest.json", "oci-layout")


class _Layout(Exception):
    """A tar being unpacked as a rootfs turned out to be an image layout."""


def _not_a_layout(name: str) -> None:
    if name.endswith(_LAYOUT_MARKERS) and posixpath.normpath(name) in _LAYOUT_MARKERS:
        raise _Layout


def _entries(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def import_image(store: Store, source: str | os.PathLike, ref: str) -> ImageRecord:
    """Import ``source`` as the image ``ref`` (NAME[:TAG]); return the image record."""
    fd, is_dir = open_source(source)
    try:
        return store_image(store, ref, lambda job: job.layers(Path(source), fd, is_dir))
    finally:
        os.close(fd)


def store_image(
    store: Store, ref: str, fill: Callable[[_Import], tuple[list[str], dict]]
) -> ImageRecord:
    """Record the image ``ref`` (NAME[:TAG]) whose layers ``fill`` stores through the
    import it is given (returning their digests and the run defaults): every source of
    images (a layout, a registry) goes through this one path, and its undo."""
    name, tag = split_image_ref(ref)
    with store.lock(), _Import(store, store.images / name) as job:
        digests, defaults = fill(job)
        record = ImageRecord(
            name=name,
            tag=tag,
            id=hashlib.sha256(json.dumps([digests, defaults], sort_keys=True).encode()).hexdigest(),
            layers=digests,
            config=records.from_json(defaults, RunDefaults, "image config"),
            created=time.time(),
        )
        job.check_interrupt()
        job.image_dir.mkdir(parents=True, exist_ok=True)
        records.write(job.image_dir / f"{tag}.json", record)
        return record
