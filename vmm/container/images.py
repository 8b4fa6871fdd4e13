"""Images: named, ordered lists of layers plus the defaults a container starts with.

An image is a small typed record, ``images/<name>/<tag>.json`` (``ImageRecord``): its
layer digests, bottom first, and the run defaults from its config (Cmd, Entrypoint,
Env, WorkingDir). The layers themselves live in the layer store (``layers.py``),
shared between images; ``importer.py`` creates images. A record that does not load is
``Broken``: listed as such, removable, and otherwise left alone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Annotated

from vmm.container import atomic, layers, records
from vmm.container.names import checker, split_image_ref
from vmm.container.records import Broken, Digest, json_name
from vmm.container.state import Store
from vmm.errors import PyvmmError


@dataclass
class RunDefaults:
    """config.md's ``config`` fields a container starts with (keys as the spec spells them)."""

    env: list[str] | None = field(default=None, metadata=json_name("Env"))
    cmd: list[str] | None = field(default=None, metadata=json_name("Cmd"))
    entrypoint: list[str] | None = field(default=None, metadata=json_name("Entrypoint"))
    working_dir: str | None = field(default=None, metadata=json_name("WorkingDir"))


ImageName = Annotated[str, checker("image")]
Tag = Annotated[str, checker("tag")]


@dataclass
class ImageRecord:
    """An image's ``images/<name>/<tag>.json``: its layers and run defaults."""

    name: ImageName
    tag: Tag
    id: str
    layers: list[Digest]  # bottom first
    config: RunDefaults
    created: float

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def _path(store: Store, name: str, tag: str):
    return store.images / name / f"{tag}.json"


def load(store: Store, name: str, tag: str) -> ImageRecord | Broken:
    return records.load(_path(store, name, tag), ImageRecord, name=name, tag=tag)


def get(store: Store, ref: str) -> ImageRecord:
    """The record of image ``ref``, or a one-line error if there is none or it is broken."""
    name, tag = split_image_ref(ref)
    if not _path(store, name, tag).exists():
        raise PyvmmError(f"no such image: {name}:{tag}")
    record = load(store, name, tag)
    if isinstance(record, Broken):
        raise PyvmmError(f"image {name}:{tag} is broken ({record.reason}): remove it")
    return record


def list_images(store: Store) -> list[tuple[str, ImageRecord | Broken]]:
    """Every image's NAME:TAG and record, sorted."""
    if not store.images.is_dir():
        return []
    found = []
    for name in sorted(os.listdir(store.images)):
        with contextlib.suppress(NotADirectoryError):
            for file in sorted(os.listdir(store.images / name)):
                if file.endswith(".json") and not atomic.is_tmp(file):
                    tag = file.removesuffix(".json")
                    found.append((f"{name}:{tag}", load(store, name, tag)))
    return found


def size(store: Store, record: ImageRecord) -> int | None:
    """The sum of the image's layers (None if a layer's record is broken)."""
    sizes = [layers.size(store, d) for d in record.layers]
    return None if None in sizes else sum(sizes)


def total_size(store: Store, images: list[ImageRecord]) -> int:
    """Disk used by ``images``' layers, a layer shared by several images counted once;
    a layer whose size is unknown counts as 0."""
    return sum(layers.size(store, d) or 0 for d in {d for r in images for d in r.layers})


def remove(store: Store, ref: str, layers_in_use: set[str], users: list[str]) -> None:
    """Delete image ``ref``, then the layers nothing else uses.

    ``users`` are the containers created from it (removal is refused while there are
    any); ``layers_in_use`` are layers containers still mount, kept even when no image
    names them any more. A broken image's record goes too (no container can be using
    it: none can be created from it). The caller holds the store lock.
    """
    name, tag = split_image_ref(ref)
    if not _path(store, name, tag).exists():
        raise PyvmmError(f"no such image: {name}:{tag}")
    if users:
        raise PyvmmError(f"image {name}:{tag} is used by container(s) {', '.join(users)}")
    os.unlink(_path(store, name, tag))
    for file in os.listdir(store.images / name):
        if atomic.is_tmp(file):  # a write cut short by a crash
            os.unlink(store.images / name / file)
    for other in os.listdir(store.images):  # this one's, and those crashed imports made
        with contextlib.suppress(OSError):
            os.rmdir(store.images / other)
    keep = layers_in_use | {d for _, r in list_images(store) for d in getattr(r, "layers", ())}
    layers.collect(store, keep)
