"""Lab 26: an image fetched from a registry with nothing but HTTP GETs and sha256.

Usage: python fetch_image.py REGISTRY REPO TAG LAYOUT

Fetches REPO:TAG from the registry at REGISTRY (host:port, plain HTTP: a registry on
this machine's loopback) and writes it into LAYOUT, a new folder, as an OCI image
layout, which ``pyvmm image import LAYOUT NAME`` verifies and stores. Prints the
manifest's digest. Refuses (exit status 1, one line on stderr, no LAYOUT left) any
byte that is not what its digest says.

The distribution specification (spec.md, "Pull") gives two URLs:

    GET /v2/<repo>/manifests/<tag>      the manifest, a JSON document
    GET /v2/<repo>/blobs/<digest>       a blob: the config, a layer

and the manifest names every blob by digest (the sha256 of its bytes) and size.
"""

import hashlib
import json
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

# media-types.md: the manifest this lab asks for, and the index it writes.
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_DOCUMENT = 4 << 20  # a manifest or config larger than this is refused unread


class Refused(Exception):
    """Bytes that are not what their digest says, or a registry that said no."""


def get(url: str, accept: str | None = None, limit: int | None = None) -> bytes:
    """The body of ``GET url`` (at most ``limit`` bytes), or Refused."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read(limit + 1 if limit else -1)
    except urllib.error.HTTPError as e:
        raise Refused(f"GET {url}: HTTP {e.code} {e.read(300).decode(errors='replace')}") from None
    except OSError as e:
        raise Refused(f"GET {url}: {e}") from None
    if limit and len(data) > limit:
        raise Refused(f"GET {url}: larger than {limit} bytes")
    return data


def digest_of(data: bytes) -> str:
    """A descriptor's digest for ``data`` (descriptor.md): "sha256:" and the hex."""
    # >>> 26: the sha256 of exactly these bytes, as "sha256:<64 hex digits>"
    #| raise NotImplementedError
    return "sha256:" + hashlib.sha256(data).hexdigest()
    # <<<


def fetch_manifest(base: str, repo: str, tag: str) -> tuple[bytes, str]:
    """The manifest of ``repo:tag``, its bytes as received, and its digest."""
    # >>> 26: GET base/v2/<repo>/manifests/<tag>, saying in the Accept header which
    # ... format you read (MEDIA_MANIFEST: a registry answers an OCI manifest to no one
    # ... who does not ask for it), at most MAX_DOCUMENT bytes. Its digest is that of the
    # ... bytes as received, not of the JSON parsed and written again
    #| raise NotImplementedError
    data = get(f"{base}/v2/{repo}/manifests/{tag}", MEDIA_MANIFEST, MAX_DOCUMENT)
    return data, digest_of(data)
    # <<<


def fetch_blob(base: str, repo: str, descriptor: dict, limit: int | None = None) -> bytes:
    """The blob ``descriptor`` names, verified: Refused unless it is exactly those bytes."""
    # >>> 26: GET base/v2/<repo>/blobs/<digest>; refuse (raise Refused) a blob whose
    # ... length is not the descriptor's size or whose digest is not the descriptor's:
    # ... the registry is a stranger, the digest is the only thing you can trust
    #| raise NotImplementedError
    data = get(f"{base}/v2/{repo}/blobs/{descriptor['digest']}", limit=limit)
    if len(data) != descriptor["size"]:
        raise Refused(f"blob {descriptor['digest']}: {len(data)} bytes, not {descriptor['size']}")
    if digest_of(data) != descriptor["digest"]:
        raise Refused(f"blob {descriptor['digest']}: digest mismatch ({digest_of(data)})")
    return data
    # <<<


def write_blob(layout: Path, data: bytes) -> None:
    """image-layout.md: a blob's file is blobs/sha256/<hex>."""
    (layout / "blobs" / "sha256" / digest_of(data).removeprefix("sha256:")).write_bytes(data)


def fetch_image(registry: str, repo: str, tag: str, layout: Path) -> str:
    """Write ``repo:tag`` into ``layout``; return the manifest's digest."""
    base = f"http://{registry}"
    data, digest = fetch_manifest(base, repo, tag)
    manifest = json.loads(data)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    write_blob(layout, data)
    write_blob(layout, fetch_blob(base, repo, manifest["config"], MAX_DOCUMENT))
    for descriptor in manifest["layers"]:
        write_blob(layout, fetch_blob(base, repo, descriptor))
    entry = {"mediaType": MEDIA_MANIFEST, "digest": digest, "size": len(data)}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return digest


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    registry, repo, tag, layout = argv[0], argv[1], argv[2], Path(argv[3])
    try:
        layout.mkdir()
    except OSError as e:
        print(f"fetch_image: {layout}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        print(fetch_image(registry, repo, tag, layout))
    except (Refused, KeyError, TypeError, ValueError) as e:
        shutil.rmtree(layout)
        print(f"fetch_image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
