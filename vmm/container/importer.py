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

Nothing of a failed import stays: the store is locked for the whole import, so every
layer directory that appeared during it is this import's, and is removed again on any
exception, Ctrl-C included.
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

from vmm.container import imagespec, unpack
from vmm.container.imagespec import INDEX_TYPES, MANIFEST_TYPES, SHA256, Descriptor, ImageError
from vmm.container.layout import DirLayout, Layout, TarLayout, finish, open_source
from vmm.container.names import split_image_ref
from vmm.container.state import Store, remove_tree, write_json

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


def _store_layer(store: Store, f: BinaryIO, verify: Callable[[str], None] | None = None) -> str:
    return unpack.store_layer(store, f, verify)[0]


def _store_blob(
    store: Store, files: Layout, i: int, name: str, want: Descriptor | None, diff_id: str
) -> str:
    """Unpack layer ``i`` into the store, verified: the blob while it is read, then the
    tar's sha256 against ``diff_id``, both before the layer is stored."""
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
            return _store_layer(store, f, verify)
        except unpack.LayerError:
            # Bytes that are not the blob named explain why they did not unpack.
            finish(f)
            raise


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


def _from_layout(store: Store, files: Layout) -> tuple[list[str], dict]:
    """Store a docker-save or OCI layout's layers; return their digests and run defaults."""
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
            f"image lists {len(names)} layer(s) but its config {len(config.diff_ids)} diff_id(s)"
        )
    digests = [
        _store_blob(store, files, i, name, desc, diff_id)
        for i, (name, desc, diff_id) in enumerate(zip(names, descs, config.diff_ids, strict=True))
    ]
    return digests, config.defaults


def _import_layers(store: Store, source: Path, fd: int, is_dir: bool) -> tuple[list[str], dict]:
    """Store the layers of ``source`` (open as ``fd``); return their digests and the
    image's run defaults."""
    if is_dir:
        files = DirLayout(fd)
        if files.has("oci-layout"):
            return _from_layout(store, files)
        with tempfile.TemporaryFile(dir=store.root) as tmp:
            unpack.tar_directory(source, tmp)
            tmp.seek(0)
            return [_store_layer(store, tmp)], {}
    with os.fdopen(os.dup(fd), "rb") as f:
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
            if files.has("manifest.json") or files.has("oci-layout"):
                return _from_layout(store, files)
        f.seek(0)
        return [_store_layer(store, f)], {}


def _entries(path: Path) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def _undo(store: Store, layers_before: set[str], image_dir: Path | None) -> None:
    """Remove every layer directory (or temporary one) that appeared since the import
    began, and the image's directory if the import made it.

    Under the store lock nothing else adds layers, so these are the import's. Ctrl-C
    and SIGTERM wait until this is done: a second Ctrl-C must not leave half a layer.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        for entry in _entries(store.layers) - layers_before:
            remove_tree(store.layers / entry)
        if image_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(image_dir)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def import_image(store: Store, source: str | os.PathLike, ref: str) -> dict:
    """Import ``source`` as the image ``ref`` (NAME[:TAG]); return the image record."""
    name, tag = split_image_ref(ref)
    fd, is_dir = open_source(source)
    try:
        with store.lock():
            layers_before = _entries(store.layers)
            image_dir = store.images / name
            made_dir = not image_dir.exists()
            try:
                digests, defaults = _import_layers(store, Path(source), fd, is_dir)
                record = {
                    "name": name,
                    "tag": tag,
                    "layers": digests,
                    "config": defaults,
                    "created": time.time(),
                }
                record["id"] = hashlib.sha256(
                    json.dumps([digests, defaults], sort_keys=True).encode()
                ).hexdigest()
                image_dir.mkdir(parents=True, exist_ok=True)
                write_json(image_dir / f"{tag}.json", record)
                return record
            except BaseException:
                _undo(store, layers_before, image_dir if made_dir else None)
                raise
    finally:
        os.close(fd)
