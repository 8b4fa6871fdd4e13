"""The OCI image specification's JSON documents, type-checked before anything trusts them.

An imported image is a chain of content-addressed documents: an index names a
manifest by digest, the manifest names a config and the layers by digest, and the
config lists each layer's ``diff_id`` (the sha256 of its uncompressed tar). The
importer verifies each link of the chain; this module checks that each document has
the shape the specification gives it, so that a config whose ``Cmd`` is a string is
one line at import rather than a crash when a container starts, and so that every
digest is one pyvmm can verify (sha256, spelled canonically) before it names a file.

The schemas are the image spec's ``schema/*.json`` (descriptor, index, manifest,
config). Like containerd and Docker (Go's ``encoding/json``), an optional field that
is ``null`` counts as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmm.errors import PyvmmError

# descriptor.md, "Digests": algorithm ":" encoded, with this grammar.
DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# descriptor.md, "SHA-256": the only algorithm implementations MUST support.
SHA256 = re.compile(r"[a-f0-9]{64}")

# media-types.md; and Docker's image manifest v2, schema 2.
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# layer.md: the tar layer types (zstd and other compressions are not unpacked here).
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
# config.md, "Properties": the container defaults pyvmm records (and runs with, all
# but the last two).
RUN_DEFAULTS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels")


class ImageError(PyvmmError):
    """An image whose documents or blobs are not what they claim to be."""


@dataclass(frozen=True)
class Descriptor:
    """descriptor.md: what a document points at, and how to know it got the right bytes."""

    media_type: str | None
    digest: str
    size: int


@dataclass(frozen=True)
class ImageConfig:
    """config.md: the layers' uncompressed digests, bottom first, and the run defaults."""

    diff_ids: list[str]
    defaults: dict[str, Any]


def check_digest(value: object, what: str) -> str:
    """``value`` if it is a sha256 digest spelled canonically; one line otherwise."""
    m = DIGEST.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ImageError(f"{what}: {value!r} is not a digest (algorithm:hex)")
    if m.group(1) != "sha256":
        raise ImageError(f"{what}: unsupported digest algorithm {m.group(1)!r} (only sha256)")
    if not SHA256.fullmatch(m.group(2)):
        raise ImageError(f"{what}: {value!r} is not a sha256 digest (64 lowercase hex digits)")
    return value


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", bool: "boolean"}


def _json_type(value: object) -> str:
    return "number" if isinstance(value, float) else _JSON_TYPES.get(type(value), "null")


def _field(doc: dict, key: str, kind: type, what: str, required: bool = False) -> Any:
    """``doc[key]`` checked to be a ``kind``; None if absent or null and not required."""
    value = doc.get(key)
    if value is None and not required:
        return None
    if type(value) is not kind:  # not isinstance: JSON true is no integer
        shown = "missing" if key not in doc else f"a JSON {_json_type(value)}"
        raise ImageError(f"{what}: {key!r} must be a JSON {_JSON_TYPES[kind]}, not {shown}")
    return value


def _object(value: object, what: str) -> dict:
    if type(value) is not dict:
        raise ImageError(f"{what} must be a JSON object, not a JSON {_json_type(value)}")
    return value


def _strings(doc: dict, key: str, what: str) -> list[str] | None:
    """An optional list of strings (``Cmd``, ``Entrypoint``, ``Env``...)."""
    value = _field(doc, key, list, what)
    if value is not None and not all(isinstance(s, str) for s in value):
        raise ImageError(f"{what}: {key!r} must be a list of strings, not {value!r:.60}")
    return value


def _map(doc: dict, key: str, values: type, what: str) -> dict | None:
    """An optional object whose values are all ``values`` (``Labels``, ``Volumes``...)."""
    value = _field(doc, key, dict, what)
    if value is not None and not all(isinstance(v, values) for v in value.values()):
        kind = "strings" if values is str else "objects"
        raise ImageError(f"{what}: {key!r} must map names to {kind}")
    return value


def descriptor(value: object, what: str) -> Descriptor:
    """descriptor.md: ``mediaType`` string, ``digest``, ``size`` a non-negative integer."""
    doc = _object(value, what)
    size = _field(doc, "size", int, what, required=True)
    if size < 0:
        raise ImageError(f"{what}: negative size {size}")
    return Descriptor(
        media_type=_field(doc, "mediaType", str, what),
        digest=check_digest(doc.get("digest"), f"{what} digest"),
        size=size,
    )


def index(value: object, what: str) -> list[tuple[Descriptor, dict]]:
    """image-index.md: each manifest's descriptor with its ``platform`` (empty if none)."""
    doc = _object(value, what)
    manifests = _field(doc, "manifests", list, what, required=True)
    if not manifests:
        raise ImageError(f"{what} lists no manifests")
    found = []
    for i, entry in enumerate(manifests):
        where = f"{what} manifest {i}"
        d = descriptor(entry, where)
        platform = _field(entry, "platform", dict, where) or {}
        for key in ("architecture", "os"):
            _field(platform, key, str, f"{where} platform")
        found.append((d, platform))
    return found


def manifest(value: object, what: str) -> tuple[Descriptor, list[Descriptor]]:
    """manifest.md: the config's descriptor and the layers', bottom first."""
    doc = _object(value, what)
    if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        raise ImageError(f"{what} is an index where a manifest was expected")
    config = descriptor(_field(doc, "config", dict, what, required=True), f"{what} config")
    found = []
    for i, entry in enumerate(_field(doc, "layers", list, what, required=True)):
        layer = descriptor(entry, f"{what} layer {i}")
        if layer.media_type is not None and layer.media_type not in LAYER_TYPES:
            raise ImageError(f"{what} layer {i}: unsupported media type {layer.media_type!r}")
        found.append(layer)
    return config, found


def image_config(value: object, what: str) -> ImageConfig:
    """config.md and schema/config-schema.json: every field pyvmm or a runtime reads."""
    doc = _object(value, what)
    for key in ("architecture", "os"):
        _field(doc, key, str, what, required=True)
    if doc["os"] != "linux":
        raise ImageError(f"{what}: an image for {doc['os']!r}, not linux")
    for key in ("created", "author", "variant"):
        _field(doc, key, str, what)
    rootfs = _field(doc, "rootfs", dict, what, required=True)
    if rootfs.get("type") != "layers":
        raise ImageError(f"{what}: rootfs type must be 'layers', not {rootfs.get('type')!r}")
    diff_ids = _field(rootfs, "diff_ids", list, f"{what} rootfs", required=True)
    for i, d in enumerate(diff_ids):
        check_digest(d, f"{what} rootfs diff_ids[{i}]")
    config = _field(doc, "config", dict, what) or {}
    for key in ("User", "StopSignal"):
        _field(config, key, str, what)
    _map(config, "Labels", str, what)
    for key in ("ExposedPorts", "Volumes"):
        _map(config, key, dict, what)
    _field(config, "ArgsEscaped", bool, what)
    return ImageConfig(diff_ids=diff_ids, defaults=run_defaults(config, what))


def run_defaults(value: object, what: str) -> dict[str, Any]:
    """The fields of an image config's ``config`` a container starts with, checked:
    ``Cmd``, ``Entrypoint`` and ``Env`` lists of strings, ``WorkingDir``, ``User`` strings."""
    config = _object(value, what)
    for key in ("Cmd", "Entrypoint", "Env"):
        for s in _strings(config, key, what) or []:
            if "\0" in s:  # execve takes C strings: the NUL would cut it short at run
                raise ImageError(f"{what}: {key} entry {s!r:.60} contains a NUL byte")
    for env in config.get("Env") or []:
        if "=" not in env:
            raise ImageError(f"{what}: Env entry {env!r:.60} is not NAME=value")
    for key in ("WorkingDir", "User"):
        if "\0" in (_field(config, key, str, what) or ""):
            raise ImageError(f"{what}: {key} contains a NUL byte")
    return {k: config[k] for k in RUN_DEFAULTS if config.get(k)}


def docker_manifest(value: object, what: str) -> tuple[str, list[str]]:
    """``docker save``'s manifest.json: the first image's config path and layer paths."""
    if not isinstance(value, list) or not value:
        raise ImageError(f"{what} must be a non-empty JSON array")
    doc = _object(value[0], f"{what} entry 0")
    config = _field(doc, "Config", str, what, required=True)
    layers = _field(doc, "Layers", list, what, required=True)
    if not all(isinstance(p, str) for p in layers):
        raise ImageError(f"{what}: 'Layers' must be a list of paths")
    return config, layers
