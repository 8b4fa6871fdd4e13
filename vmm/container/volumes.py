"""Volumes and bind mounts: container paths whose data lives outside the container.

Both are bind mounts in the end; they differ in who owns the data:

- a **named volume** (``-v NAME:/path``) is a directory pyvmm manages under
  ``volumes/NAME/_data``. It is created on first use, and when it is new and empty
  it is filled with what the image has at ``/path`` (so a volume on /etc starts as the
  image's /etc). It outlives ``container rm`` and is removed only by ``volume rm``,
  which refuses while a container refers to it.
- a **bind mount** (``-v /host/path:/path``) shows an existing host path; pyvmm never
  creates or removes it.

``:ro`` makes either read-only inside the container.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from pathlib import Path

from vmm.container import fdtree, mounts
from vmm.container.names import check_name
from vmm.container.state import Store, read_json, write_json
from vmm.errors import PyvmmError


def parse(spec: str) -> dict:
    """``-v SOURCE:TARGET[:ro|rw]`` to a mount record; bind sources must exist."""
    fields = spec.split(":")
    if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in ("ro", "rw")):
        raise PyvmmError(f"bad volume {spec!r}: use NAME:/path[:ro] or /host/path:/path[:ro]")
    source, target = fields[0], fields[1]
    if not target.startswith("/") or ".." in target.split("/"):
        raise PyvmmError(f"bad volume {spec!r}: the container path must be absolute, no '..'")
    target = posixpath.normpath(target)
    if target == "/":
        raise PyvmmError(f"bad volume {spec!r}: cannot mount over the container's root")
    why = mounts.refused(target, "bind", source)
    if why:
        raise PyvmmError(f"bad volume {spec!r}: {why}")
    read_only = len(fields) == 3 and fields[2] == "ro"
    if source.startswith("/"):
        if not os.path.exists(source):
            raise PyvmmError(f"bind mount source {source} does not exist")
        return {"type": "bind", "source": os.path.realpath(source), "target": target,
                "ro": read_only}  # fmt: skip
    return {"type": "volume", "source": check_name("volume", source), "target": target,
            "ro": read_only}  # fmt: skip


def data_dir(store: Store, name: str) -> str:
    return str(store.volumes / name / "_data")


def create(store: Store, name: str) -> dict:
    """Create volume ``name`` if it does not exist; return its record. Caller locks."""
    check_name("volume", name)
    path = store.volumes / name
    if (path / "volume.json").exists():
        return read_json(path / "volume.json")
    os.makedirs(path / "_data", exist_ok=True)
    record = {"name": name, "created": time.time(), "populated": False}
    write_json(path / "volume.json", record)
    return record


def get(store: Store, name: str) -> dict:
    check_name("volume", name)
    try:
        record = read_json(store.volumes / name / "volume.json")
    except FileNotFoundError:
        raise PyvmmError(f"no such volume: {name}") from None
    record["mountpoint"] = data_dir(store, name)
    return record


def list_volumes(store: Store) -> list[dict]:
    if not store.volumes.is_dir():
        return []
    return [get(store, p.name) for p in sorted(store.volumes.iterdir())]


def remove(store: Store, name: str, users: list[str]) -> None:
    """Delete volume ``name`` and its data, unless containers in ``users`` refer to it."""
    get(store, name)
    if users:
        raise PyvmmError(f"volume {name} is in use by container(s) {', '.join(users)}")
    fdtree.remove_tree(store.volumes / name)


def populate(store: Store, name: str, image_path: str) -> None:
    """Copy the image's content at ``image_path`` into volume ``name`` on its first use.

    Runs in the container's mount namespace before pivot_root, with the overlay
    mounted: ``image_path`` names the directory the target resolved to inside it
    (``inroot.target``), and is followed.
    """
    record_path = store.volumes / name / "volume.json"
    record = read_json(record_path)
    if record["populated"]:
        return
    data = data_dir(store, name)
    if stat.S_ISDIR(os.stat(image_path).st_mode) and not os.listdir(data):
        with fdtree.opened(Path(image_path)) as src, fdtree.opened(Path(data)) as dst:
            fdtree.copy(src, dst)  # the image's tree: as deep and as linked as it likes
    record["populated"] = True
    write_json(record_path, record)
