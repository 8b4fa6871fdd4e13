"""``pyvmm image push``: an image of the store into a registry, as Docker pushes it.

Each layer is sent the cheapest way the registry allows, as Docker does with its
distribution metadata (``layers.BlobSource``): if a repository of the same registry
is known to hold it, a ``HEAD`` finds it already in the target, or a cross-repository
mount links it there without a byte uploaded; otherwise pyvmm writes the stored tree
as a tar (OCI whiteouts, sorted, owner names dropped: ``unpack.tar_directory``),
gzips it reproducibly (no name, no time in the header), and uploads it unless a
``HEAD`` finds that blob there already. The same stored layer therefore always makes
the same blob, and pushing an image twice uploads nothing the second time.

The config pyvmm writes holds what the store keeps of an image (its layers' diff_ids
and the run defaults), so a layer pyvmm made itself (a directory import) comes back
from a pull as the very layer it was, and a pulled image pushed again to the same
registry keeps its layers' digests. (Docker keeps ``tar-split`` data to rebuild any
layer's original tar byte for byte; pyvmm does not, so a layer that came as someone
else's tar and is pushed to another registry is a new blob, with a new diff_id.)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

from vmm.container.image import images, reference, registry, unpack
from vmm.container.image.imagespec import MANIFEST_TYPES, Descriptor
from vmm.container.image.importer import HOST
from vmm.container.image.progress import Progress
from vmm.container.store import layers, records
from vmm.container.store.layers import BlobSource
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

# media-types.md: what pyvmm writes.
OCI_MANIFEST = MANIFEST_TYPES[0]
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# Go's compress/gzip DefaultCompression, which Docker pushes with.
GZIP_LEVEL = 6


class _Hashing:
    """A write-only file that hashes and counts what passes into ``out``."""

    def __init__(self, out: BinaryIO | None = None):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class _Tee:
    """Writes to two files: the tar goes to its hash and to the compressor."""

    def __init__(self, *outs):
        self.outs = outs

    def write(self, data) -> int:
        for out in self.outs:
            out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def layer_blob(store: Store, digest: str, out: BinaryIO) -> tuple[Descriptor, str]:
    """Write stored layer ``digest`` into ``out`` as a gzipped tar; return the blob's
    descriptor and the tar's diff_id. The caller holds the store lock."""
    compressed = _Hashing(out)
    tar_hash = _Hashing()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=compressed,
                       mtime=0) as z:  # fmt: skip
        unpack.tar_directory(layers.layer_dir(store, digest), _Tee(tar_hash, z), True)
    return Descriptor(OCI_LAYER_GZIP, compressed.digest, compressed.size), tar_hash.digest


def _push_layer(
    client: registry.Client, store: Store, ref: reference.Reference, digest: str, progress: Progress
) -> tuple[Descriptor, str]:
    """Get layer ``digest`` into ``ref``'s repository; return its descriptor and diff_id."""
    key = digest.removeprefix("sha256:")
    repo = ref.repository
    scopes = registry.scopes(repo, "pull", "push")
    known = [s for s in reversed(layers.sources(store, digest)) if s.registry == ref.registry]
    for source in known:
        if client.has_blob(repo, source.digest, scopes):
            progress.set(key, "Layer already exists")
            return _desc(source), source.diff_id
    for source in known:
        if source.repository != repo:
            also = registry.scopes(repo, "pull", "push", also=(source.repository,))
            if client.mount(repo, source.digest, source.repository, also):
                progress.set(key, f"Mounted from {source.repository}")
                _remember(store, digest, ref, _desc(source), source.diff_id)
                return _desc(source), source.diff_id
    with tempfile.TemporaryFile(dir=store.root) as f:
        progress.set(key, "Preparing")
        with store.lock():
            if not layers.layer_dir(store, digest).is_dir():
                raise PyvmmError(f"layer {digest} was removed while the image was pushed")
            desc, diff_id = layer_blob(store, digest, f)
        if client.has_blob(repo, desc.digest, scopes):
            progress.set(key, "Layer already exists")
        else:
            progress.set(key, f"Pushing {desc.size / (1 << 20):.1f}MiB")
            f.seek(0)
            client.upload(repo, desc.digest, desc.size, f, scopes)
            progress.set(key, "Pushed")
    _remember(store, digest, ref, desc, diff_id)
    return desc, diff_id


def _desc(source: BlobSource) -> Descriptor:
    return Descriptor(source.media_type, source.digest, source.size)


def _remember(
    store: Store, digest: str, ref: reference.Reference, desc: Descriptor, diff_id: str
) -> None:
    source = BlobSource(
        ref.registry, ref.repository, desc.digest, desc.size, desc.media_type, diff_id
    )
    with store.lock():
        layers.add_source(store, digest, source)


def _put_blob(client: registry.Client, repo: str, data: bytes) -> Descriptor:
    """A small blob (the config), unless the registry has it already."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    scopes = registry.scopes(repo, "pull", "push")
    if not client.has_blob(repo, digest, scopes):
        with tempfile.SpooledTemporaryFile() as f:
            f.write(data)
            f.seek(0)
            client.upload(repo, digest, len(data), f, scopes)
    return Descriptor(OCI_CONFIG, digest, len(data))


def _document(value: object) -> bytes:
    """JSON as pyvmm writes it: the same image always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(d: Descriptor) -> dict:
    return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}


def push(
    store: Store,
    image: str,
    dest: str,
    authfile: Path | None = None,
    plain_http: bool = False,
    progress: Progress | None = None,
) -> str:
    """Push the store's ``image`` (NAME[:TAG]) to ``dest``; return the manifest digest."""
    progress = progress or Progress()
    record = images.get(store, image)
    ref = reference.parse(dest)
    if ref.digest:
        raise PyvmmError(f"push to a tag, not a digest: {dest}")
    client = registry.connect(ref, authfile, plain_http)
    pushed = registry.parallel(
        lambda d: _push_layer(client, store, ref, d, progress), record.layers, threading.Event()
    )
    defaults = {k: v for k, v in records.to_json(record.config).items() if v is not None}
    config = {
        "architecture": HOST[1],
        "os": HOST[0],
        "config": defaults,
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in pushed]},
        # config.md "history", an entry a layer: buildah and Podman refuse to build on an
        # image whose history lists fewer layers than it has.
        "history": [{"created_by": "pyvmm"} for _ in pushed],
    }
    config_desc = _put_blob(client, ref.repository, _document(config))
    manifest = _document(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(config_desc),
            "layers": [_descriptor(d) for d, _ in pushed],
        }
    )
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    resp = client.request(
        "PUT", f"/v2/{ref.repository}/manifests/{ref.tag}",
        registry.scopes(ref.repository, "pull", "push"),
        {"Content-Type": OCI_MANIFEST, "Content-Length": str(len(manifest))}, manifest,
        ok=(201,), what=f"manifest {ref.tag}",
    )  # fmt: skip
    resp.close()
    claimed = resp.getheader("Docker-Content-Digest")
    if claimed and claimed != digest:
        raise PyvmmError(f"{ref.registry}: stored the manifest as {claimed}, not {digest}")
    return digest
