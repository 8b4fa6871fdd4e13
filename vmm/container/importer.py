"""Importing images from what a student is likely to have at hand.

- a directory holding a root filesystem (one layer);
- a tar of a root filesystem, plain or gzip (one layer);
- an OCI image layout, as a directory or a tar (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``);
- a ``docker save`` tar, through its legacy ``manifest.json`` (older and newer Docker
  both write it; newer Docker adds an OCI index, read when the legacy file is absent).

Each layer goes through ``unpack.store_layer``, which refuses unsafe entries; if any
layer fails, the layers this import added are removed again, so nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from vmm.container import layers, unpack
from vmm.container.names import split_image_ref
from vmm.container.state import Store, write_json
from vmm.errors import PyvmmError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


class _Dir:
    """Files of an image layout that is a directory."""

    def __init__(self, path: Path):
        self.path = path

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def open(self, name: str) -> BinaryIO:
        if name.startswith("/") or ".." in name.split("/"):
            raise PyvmmError(f"image layout refers to {name!r}, outside the layout")
        return open(self.path / name, "rb")


class _Tar:
    """Files of an image layout that is a tar (``docker save``, OCI archive)."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.names = {m.name.removeprefix("./"): m for m in tar.getmembers()}

    def has(self, name: str) -> bool:
        return name in self.names

    def open(self, name: str) -> BinaryIO:
        m = self.names.get(name)
        f = self.tar.extractfile(m) if m else None
        if f is None:
            raise PyvmmError(f"image archive has no file {name}")
        return f


def _json(layout, name: str) -> dict | list:
    with layout.open(name) as f:
        try:
            return json.load(f)
        except ValueError:
            raise PyvmmError(f"image file {name} is not JSON") from None


def _blob(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise PyvmmError(f"unsupported blob digest {digest!r}")
    return f"blobs/sha256/{hexdigest}"


def _read_layout(layout) -> tuple[list[str], dict]:
    """(layer file names bottom first, image config JSON) of a docker-save or OCI layout."""
    if layout.has("manifest.json"):
        manifest = _json(layout, "manifest.json")[0]
        return manifest["Layers"], _json(layout, manifest["Config"])
    if not layout.has("index.json"):
        raise PyvmmError("image layout has neither manifest.json nor index.json")
    desc = _json(layout, "index.json")["manifests"][0]
    while desc.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
        entries = _json(layout, _blob(desc["digest"]))["manifests"]
        amd64 = [d for d in entries if d.get("platform", {}).get("architecture") == "amd64"]
        desc = (amd64 or entries)[0]
    manifest = _json(layout, _blob(desc["digest"]))
    config = _json(layout, _blob(manifest["config"]["digest"]))
    return [_blob(layer["digest"]) for layer in manifest["layers"]], config


def _from_layout(layout, add) -> tuple[list[str], dict]:
    names, config = _read_layout(layout)
    digests = []
    for name in names:
        with layout.open(name) as f:
            digests.append(add(f))
    return digests, config.get("config") or {}


def _import_layers(store: Store, source: Path, added: list[str]) -> tuple[list[str], dict]:
    """Store the layers of ``source``; return their digests and the image config."""

    def add(f: BinaryIO) -> str:
        digest, new = unpack.store_layer(store, f)
        if new:
            added.append(digest)
        return digest

    if source.is_dir():
        if (source / "oci-layout").exists():
            return _from_layout(_Dir(source), add)
        with tempfile.TemporaryFile(dir=store.root) as tmp:
            unpack.tar_directory(source, tmp)
            tmp.seek(0)
            return [add(tmp)], {}
    try:
        tar = tarfile.open(source, "r:*")
    except tarfile.TarError:
        raise PyvmmError(f"{source}: not a directory or a tar (plain or gzip)") from None
    with tar:
        layout = _Tar(tar)
        if layout.has("manifest.json") or layout.has("oci-layout"):
            return _from_layout(layout, add)
    with open(source, "rb") as f:
        return [add(f)], {}


def import_image(store: Store, source: str | os.PathLike, ref: str) -> dict:
    """Import ``source`` as the image ``ref`` (NAME[:TAG]); return the image record."""
    name, tag = split_image_ref(ref)
    source = Path(source)
    if not source.exists():
        raise PyvmmError(f"image source {source} does not exist")
    with store.lock():
        added: list[str] = []
        try:
            digests, config = _import_layers(store, source, added)
        except (KeyError, IndexError, TypeError) as e:
            for d in added:
                layers.remove(store, d)
            raise PyvmmError(f"{source}: malformed image manifest ({e!r})") from None
        except BaseException:
            for d in added:
                layers.remove(store, d)
            raise
        keep = ("Env", "Cmd", "Entrypoint", "WorkingDir")
        record = {
            "name": name,
            "tag": tag,
            "layers": digests,
            "config": {k: config[k] for k in keep if config.get(k)},
            "created": time.time(),
        }
        record["id"] = hashlib.sha256(
            json.dumps([digests, record["config"]], sort_keys=True).encode()
        ).hexdigest()
        (store.images / name).mkdir(parents=True, exist_ok=True)
        write_json(store.images / name / f"{tag}.json", record)
        return record
