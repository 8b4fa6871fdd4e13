"""Images: named, ordered lists of layers plus the defaults a container starts with.

An image is a small JSON record, ``images/<name>/<tag>.json``: its layer digests,
bottom first, and the run defaults from its config (Cmd, Entrypoint, Env,
WorkingDir). The layers themselves live in the layer store (``layers.py``), shared
between images; ``importer.py`` creates images.
"""

from __future__ import annotations

import contextlib
import os

from vmm.container import layers
from vmm.container.names import split_image_ref
from vmm.container.state import Store, read_json
from vmm.errors import PyvmmError


def get(store: Store, ref: str) -> dict:
    """The record of image ``ref``, or a one-line error if there is none."""
    name, tag = split_image_ref(ref)
    try:
        return read_json(store.images / name / f"{tag}.json")
    except FileNotFoundError:
        raise PyvmmError(f"no such image: {name}:{tag}") from None


def list_images(store: Store) -> list[dict]:
    """All image records, each with its ``size`` (the sum of its layers)."""
    if not store.images.is_dir():
        return []
    records = []
    for path in sorted(store.images.glob("*/*.json")):
        record = read_json(path)
        record["size"] = sum(layers.size(store, d) for d in record["layers"])
        records.append(record)
    return records


def total_size(store: Store, records: list[dict]) -> int:
    """Disk used by ``records``' layers, a layer shared by several images counted once."""
    return sum(layers.size(store, d) for d in {d for r in records for d in r["layers"]})


def remove(store: Store, ref: str, layers_in_use: set[str], users: list[str]) -> None:
    """Delete image ``ref`` and the layers nothing else uses.

    ``users`` are the containers created from it (removal is refused while there are
    any); ``layers_in_use`` are layers containers still mount, kept even when no image
    names them any more. The caller holds the store lock.
    """
    record = get(store, ref)
    ref = f"{record['name']}:{record['tag']}"
    if users:
        raise PyvmmError(f"image {ref} is used by container(s) {', '.join(users)}")
    os.unlink(store.images / record["name"] / f"{record['tag']}.json")
    with contextlib.suppress(OSError):
        os.rmdir(store.images / record["name"])
    keep = layers_in_use | {d for r in list_images(store) for d in r["layers"]}
    for digest in set(record["layers"]) - keep:
        layers.remove(store, digest)
