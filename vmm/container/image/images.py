"""Images: named, ordered lists of layers plus the defaults a container starts with.

An image is a small typed record, ``images/<name>/<tag>.json`` (``ImageRecord``): its
layer digests, bottom first, and the run defaults from its config (Cmd, Entrypoint,
Env, WorkingDir, User; and ExposedPorts, Labels). The layers themselves live in the
layer store (``layers.py``), shared between images; ``importer.py`` creates images
(``build.py`` through it). A record that does not load is ``Broken``: listed as such,
removable, and otherwise left alone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Annotated

from vmm.container.linux import atomic
from vmm.container.store import layers, records
from vmm.container.store.names import checker, split_image_ref
from vmm.container.store.records import Broken, Digest, json_name
from vmm.container.store.state import Store
from vmm.errors import PyvmmError


@dataclass
class RunDefaults:
    """config.md's ``config`` fields a container starts with (keys as the spec spells them)."""

    env: list[str] | None = field(default=None, metadata=json_name("Env"))
    cmd: list[str] | None = field(default=None, metadata=json_name("Cmd"))
    entrypoint: list[str] | None = field(default=None, metadata=json_name("Entrypoint"))
    working_dir: str | None = field(default=None, metadata=json_name("WorkingDir"))
    # Who a container runs as (``users.py``); and what reads the image keeps the rest
    # (``image inspect``, a push, a build FROM it).
    user: str | None = field(default=None, metadata=json_name("User"))
    exposed_ports: dict[str, dict] | None = field(default=None, metadata=json_name("ExposedPorts"))
    labels: dict[str, str] | None = field(default=None, metadata=json_name("Labels"))


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


@dataclass
class Users:
    """What the containers say about an image being removed (``remove``)."""

    stopped: list[str]  # containers created from it, not running
    running: list[str]  # containers created from it, running
    layers: set[str]  # layers any container mounts, this image's or not
    unknown: list[Broken]  # containers whose records do not load: what they use is unknown


def _sweep_crashed_imports(store: Store) -> None:
    """What imports cut short by a crash left in any image's folder: a record's temporary
    file, then the folder if nothing else is in it. Under the store lock, which every
    image record's write holds (``importer.store_image``), so no temporary file there is
    a live write's."""
    for name in os.listdir(store.images):
        with contextlib.suppress(OSError):  # not a folder, or one still holding records
            for file in os.listdir(store.images / name):
                if atomic.is_tmp(file):
                    os.unlink(store.images / name / file)
            os.rmdir(store.images / name)


def remove(store: Store, ref: str, users: Users, force: bool = False) -> None:
    """Delete image ``ref``, then the layers nothing else uses; the caller holds the
    store lock.

    As Docker's ``rmi``: refused while a container created from the image exists
    (``force`` removes the image anyway, never while one runs), and a layer a
    container mounts is kept whatever happens to the images that named it. A broken
    container record names no layers, so while there is one, which layers it mounts
    cannot be told: the removal is refused, and with ``force`` the record goes but
    every layer is kept (the next ``image rm`` after that container's ``rm -f``
    collects them). A broken image's record goes too: no layer it may name is
    collected while a container mounts it.
    """
    name, tag = split_image_ref(ref)
    if not _path(store, name, tag).exists():
        raise PyvmmError(f"no such image: {name}:{tag}")
    if users.running:
        raise PyvmmError(f"image {name}:{tag} is being used by running container(s) "
                         f"{', '.join(users.running)}: stop them first")  # fmt: skip
    if users.stopped and not force:
        raise PyvmmError(f"image {name}:{tag} is being used by container(s) "
                         f"{', '.join(users.stopped)}: remove them first, or use -f")  # fmt: skip
    if users.unknown and not force:
        broken = users.unknown[0]
        raise PyvmmError(
            f"image {name}:{tag} may be being used by container {broken.path.parent.name[:12]}, "
            f"whose record is broken ({broken.reason}): remove it with 'container rm -f' "
            "first, or use -f (every layer is then kept)"
        )
    os.unlink(_path(store, name, tag))
    _sweep_crashed_imports(store)
    if users.unknown:
        return
    keep = users.layers | {d for _, r in list_images(store) for d in getattr(r, "layers", ())}
    layers.collect(store, keep)
