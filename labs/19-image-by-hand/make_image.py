"""Lab 19: an OCI image by hand: layers, a config, a manifest, an index.

Usage: python make_image.py [--cmd COMMAND] LAYOUT DIR [DIR...]

Writes LAYOUT, a new folder, as an OCI image layout (image-spec, image-layout.md): each
DIR becomes one layer, the first at the bottom, and COMMAND (a shell-like string) the
image's default command. Prints the manifest's digest, the image's name by content.
``pyvmm image import LAYOUT NAME`` then verifies every link and stores the image:

    oci-layout                   {"imageLayoutVersion": "1.0.0"}
    index.json                   -> the manifest's descriptor
    blobs/sha256/<hex>           the manifest -> the config's and each layer's descriptor
    blobs/sha256/<hex>           the config: the default command, the layers' diff_ids
    blobs/sha256/<hex>...        the layers: gzip-compressed tars

A descriptor (descriptor.md) names a blob by media type, digest and size: whoever holds
one can check what it is given, so one digest (the manifest's) vouches for the image.
"""

import argparse
import gzip
import hashlib
import io
import json
import shlex
import sys
from pathlib import Path

from vmm.container.image.unpack import tar_directory

# Media types, image-spec media-types.md.
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
LAYOUT_VERSION = "1.0.0"  # image-layout.md, "oci-layout file"
PLATFORM = {"architecture": "amd64", "os": "linux"}  # config.md: GOARCH and GOOS names


def layer_tar(directory: Path) -> bytes:
    """``directory`` as a layer: a tar, uncompressed, sorted and with numeric owners, so
    that the same tree always gives the same bytes (and so the same digests)."""
    out = io.BytesIO()
    tar_directory(directory, out)
    return out.getvalue()


def add_blob(layout: Path, data: bytes, media_type: str) -> dict:
    """Store ``data`` in the layout and return its descriptor."""
    # >>> 19: a blob is content-addressed: its file is blobs/sha256/<hex>, hex the sha256 of
    # ... exactly these bytes; its descriptor (a dict) gives mediaType, digest
    # ... ("sha256:<hex>") and size (the bytes' length)
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
    # <<<


def write_image(layout: Path, layers: list[Path], cmd: list[str]) -> str:
    """Write the image into the folder ``layout``; return its manifest's digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    # >>> 19: each directory, bottom first, as a layer blob: its tar (layer_tar) compressed
    # ... with gzip.compress(tar, mtime=0) (no timestamp: the same bytes every time). Keep
    # ... its descriptor, and its diff_id: "sha256:<hex>" of the tar *uncompressed*, the
    # ... layer's name however it travels
    #| descriptors, diff_ids = [], []
    descriptors, diff_ids = [], []
    for directory in layers:
        tar = layer_tar(directory)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        descriptors.append(add_blob(layout, gzip.compress(tar, mtime=0), MEDIA_LAYER))
    # <<<
    # >>> 19: the config (config.md), a JSON blob: PLATFORM's architecture and os, the run
    # ... defaults under "config" ({"Cmd": cmd}), and "rootfs": {"type": "layers",
    # ... "diff_ids": [...]}, bottom first
    #| config_descriptor = {}
    config = {
        **PLATFORM,
        "config": {"Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_descriptor = add_blob(layout, json.dumps(config).encode(), MEDIA_CONFIG)
    # <<<
    # >>> 19: the manifest (manifest.md), a JSON blob: schemaVersion 2, its mediaType, the
    # ... config's descriptor as "config" and the layers' as "layers", bottom first
    #| manifest_descriptor = {"digest": None}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_descriptor,
        "layers": descriptors,
    }
    manifest_descriptor = add_blob(layout, json.dumps(manifest).encode(), MEDIA_MANIFEST)
    # <<<
    # >>> 19: the entry points, plain files: index.json (image-index.md: schemaVersion 2,
    # ... its mediaType, "manifests": the manifest's descriptor with a "platform") and
    # ... oci-layout ({"imageLayoutVersion": LAYOUT_VERSION}); without it a tool takes the
    # ... folder for a root filesystem
    #| pass
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**manifest_descriptor, "platform": PLATFORM}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))
    # <<<
    return manifest_descriptor["digest"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="make_image", description=__doc__.splitlines()[0])
    p.add_argument("--cmd", default="/bin/sh", help="the image's default command")
    p.add_argument("layout", type=Path, help="the layout folder to write (must not exist)")
    p.add_argument("layers", type=Path, nargs="+", help="a folder per layer, bottom first")
    args = p.parse_args(argv)
    try:
        args.layout.mkdir()
    except OSError as e:
        print(f"make_image: {args.layout}: {e.strerror}", file=sys.stderr)
        return 2
    print(write_image(args.layout, args.layers, shlex.split(args.cmd)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
