"""``pyvmm image pull``: an image from a registry into the store, as Docker pulls it.

The reference names a manifest (by tag or digest); an index in its place is resolved
to this host's platform; the manifest names the config and the layer blobs. Only the
layers the store lacks (by ``diff_id``, the layer store's own name) are fetched,
several at once, each into an anonymous temporary file, hashed as it arrives and
resumed where a connection broke off. They are then unpacked through the importer
(``importer.store_image``), which checks each tar's sha256 against the config's
``diff_ids`` and takes every layer back out again if anything fails, Ctrl-C included.
A temporary file is ``O_TMPFILE``: a killed pull leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from vmm.container.image import imagespec, importer, reference, registry
from vmm.container.image.images import ImageRecord
from vmm.container.image.imagespec import INDEX_TYPES, Descriptor, ImageError
from vmm.container.image.progress import Progress
from vmm.container.store import layers
from vmm.container.store.layers import BlobSource
from vmm.container.store.names import split_image_ref
from vmm.container.store.state import Store

# moby's layer/layer_store.go maxLayerDepth: more layers than this is not an image
# Docker would store (overlayfs could not stack them), and each is a file held open here.
MAX_LAYERS = 125
# Docker's media type for a layer whose manifest gives none (schema 2 always does).
DEFAULT_LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def local_name(ref: reference.Reference) -> str:
    """The store's NAME:TAG for ``ref`` when the user gives none: the repository's last
    component, and the tag (or, pulled by digest, the digest's hex)."""
    name = ref.repository.rsplit("/", 1)[-1]
    return f"{name}:{ref.tag or ref.digest.removeprefix('sha256:')}"


def _parse(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ImageError(f"{what} is not JSON") from None


def resolve(
    client: registry.Client, ref: reference.Reference, scopes: tuple[str, ...]
) -> tuple[str, Descriptor, list[Descriptor]]:
    """The manifest's digest, and the config's and the layers' descriptors."""
    path = f"/v2/{ref.repository}/manifests/"
    what = f"manifest {ref.manifest}"
    data, media_type, digest = client.document(path + ref.manifest, scopes, what, ref.digest, None)
    doc = _parse(data, what)
    if isinstance(doc, dict) and doc.get("schemaVersion") == 1:
        raise ImageError(f"{what}: a schema 1 manifest (deprecated, not supported)")
    if media_type in INDEX_TYPES or (isinstance(doc, dict) and "manifests" in doc):
        entries = imagespec.index(doc, f"index {ref.manifest}")
        exact = [d for d, p in entries if (p.get("os"), p.get("architecture")) == importer.HOST]
        if not exact:
            found = sorted({f"{p.get('os')}/{p.get('architecture')}" for _, p in entries})
            raise ImageError(
                f"{ref}: no manifest for {'/'.join(importer.HOST)} (has {', '.join(found)})"
            )
        what = f"manifest {exact[0].digest}"
        data, _, digest = client.document(
            path + exact[0].digest, scopes, what, exact[0].digest, exact[0].size
        )
        doc = _parse(data, what)
    config, layer_descs = imagespec.manifest(doc, what)
    return digest, config, layer_descs


def _fetch(
    client: registry.Client,
    repo: str,
    scopes: tuple[str, ...],
    wanted: list[Descriptor],
    store: Store,
    progress: Progress,
) -> dict[str, BinaryIO]:
    """The blobs ``wanted``, downloaded at most ``PARALLEL`` at once, by digest."""
    stop = threading.Event()
    files: dict[str, BinaryIO] = {}

    def one(desc: Descriptor) -> None:
        key = desc.digest.removeprefix("sha256:")
        f = files[desc.digest]
        client.download(
            repo, desc.digest, desc.size, f, scopes,
            lambda n: progress.bytes(key, "Downloading", n, desc.size), stop,
        )  # fmt: skip
        progress.set(key, "Download complete")

    store.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    unique = list({d.digest: d for d in wanted}.values())
    try:
        for desc in unique:
            files[desc.digest] = tempfile.TemporaryFile(dir=store.root)
        registry.parallel(one, unique, stop)
    except BaseException:
        for f in files.values():
            f.close()
        raise
    return files


def pull(
    store: Store,
    ref_text: str,
    name: str | None = None,
    authfile: Path | None = None,
    plain_http: bool = False,
    progress: Progress | None = None,
) -> tuple[ImageRecord, str]:
    """Pull ``ref_text`` into the store as ``name`` (NAME[:TAG], default
    ``local_name``); return its record and the manifest's digest."""
    progress = progress or Progress()
    ref = reference.parse(ref_text)
    name = name or local_name(ref)
    split_image_ref(name)  # a bad local name fails before any network traffic
    client = registry.connect(ref, authfile, plain_http)
    scopes = registry.scopes(ref.repository, "pull")
    digest, config_desc, layer_descs = resolve(client, ref, scopes)
    what = f"config {config_desc.digest}"
    data, _, _ = client.document(
        f"/v2/{ref.repository}/blobs/{config_desc.digest}", scopes, what, config_desc.digest,
        config_desc.size,
    )  # fmt: skip
    config = imagespec.image_config(_parse(data, what), what)
    if len(layer_descs) > MAX_LAYERS:
        raise ImageError(f"{ref}: {len(layer_descs)} layers, more than {MAX_LAYERS}")
    if len(layer_descs) != len(config.diff_ids):
        raise ImageError(
            f"{ref}: manifest lists {len(layer_descs)} layer(s) but its config "
            f"{len(config.diff_ids)} diff_id(s)"
        )
    pairs = list(zip(layer_descs, config.diff_ids, strict=True))
    wanted = []
    for desc, diff_id in pairs:
        have = layers.layer_dir(store, diff_id).is_dir()
        progress.set(desc.digest.removeprefix("sha256:"), "Already exists" if have else "Waiting")
        if not have:
            wanted.append(desc)
    files = _fetch(client, ref.repository, scopes, wanted, store, progress)

    def fill(job: importer._Import) -> tuple[list[str], dict]:
        for i, (desc, diff_id) in enumerate(pairs):
            f = files.get(desc.digest)
            if f is None:
                if not layers.layer_dir(store, diff_id).is_dir():
                    raise ImageError(f"layer {i} {diff_id} was removed meanwhile: pull again")
                continue
            f.seek(0)

            def verify(actual: str, i: int = i, diff_id: str = diff_id) -> None:
                if actual != diff_id:
                    raise ImageError(
                        f"layer {i}: diff_id mismatch: expected {diff_id}, actual {actual}"
                    )

            progress.set(desc.digest.removeprefix("sha256:"), "Extracting")
            job.store_layer(f, verify)
            progress.set(desc.digest.removeprefix("sha256:"), "Pull complete")
        for desc, diff_id in pairs:
            source = BlobSource(
                ref.registry, ref.repository, desc.digest, desc.size,
                desc.media_type or DEFAULT_LAYER_TYPE, diff_id,
            )  # fmt: skip
            layers.add_source(store, diff_id, source)
        return list(config.diff_ids), config.defaults

    try:
        record = importer.store_image(store, name, fill)
    finally:
        for f in files.values():
            with contextlib.suppress(OSError):
                f.close()
    return record, digest
