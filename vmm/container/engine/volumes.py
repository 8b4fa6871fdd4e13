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
from dataclasses import dataclass
from pathlib import Path

from vmm.container.engine.record import Mount, VolumeName
from vmm.container.linux import fdtree, mounts
from vmm.container.store import records
from vmm.container.store.names import check_name
from vmm.container.store.records import Broken
from vmm.container.store.state import Store, Tmpfs
from vmm.errors import PyvmmError

RECORD = "volume.json"


@dataclass
class VolumeRecord:
    """A named volume's ``volume.json``: whether it was filled from an image yet."""

    name: VolumeName
    created: float
    populated: bool = False


def parse(spec: str) -> Mount:
    """``-v SOURCE:TARGET[:ro|rw]`` to a mount record; bind sources must exist."""
    fields = spec.split(":")
    if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in ("ro", "rw")):
        raise PyvmmError(f"bad volume {spec!r}: use NAME:/path[:ro] or /host/path:/path[:ro]")
    source, target = fields[0], _target(spec, fields[1], "volume")
    why = mounts.refused(target, "bind", source)
    if why:
        raise PyvmmError(f"bad volume {spec!r}: {why}")
    read_only = len(fields) == 3 and fields[2] == "ro"
    if source.startswith("/"):
        if not os.path.exists(source):
            raise PyvmmError(f"bind mount source {source} does not exist")
        return Mount("bind", os.path.realpath(source), target, read_only)
    return Mount("volume", check_name("volume", source), target, read_only)


# Docker's --tmpfs: nosuid, nodev, noexec unless the options say otherwise.
TMPFS_DEFAULTS = ["nosuid", "nodev", "noexec"]
TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge")


def parse_tmpfs(spec: str) -> Tmpfs:
    """``--tmpfs PATH[:OPTIONS]`` (mount(8)'s tmpfs options, comma-separated)."""
    target, _, text = spec.partition(":")
    where = _target(spec, target, "tmpfs")
    why = mounts.refused(where, "tmpfs", None)
    if why:
        raise PyvmmError(f"bad tmpfs {spec!r}: {why}")
    options = [o for o in text.split(",") if o] if text else []
    for o in options:
        key, has_value, _ = o.partition("=")
        known = key in TMPFS_DATA if has_value else key in mounts.FLAGS
        if not known or key in ("bind", "rbind", "remount"):
            raise PyvmmError(f"bad tmpfs {spec!r}: unknown option {o!r}")
    return Tmpfs(where, [*TMPFS_DEFAULTS, *options])


def _target(spec: str, target: str, kind: str) -> str:
    """A mount's destination in the container, checked: absolute, no '..', not the root."""
    if not target.startswith("/") or ".." in target.split("/"):
        raise PyvmmError(f"bad {kind} {spec!r}: the container path must be absolute, no '..'")
    target = posixpath.normpath(target)
    if target == "/":
        raise PyvmmError(f"bad {kind} {spec!r}: cannot mount over the container's root")
    return target


def data_dir(store: Store, name: str) -> str:
    return str(store.volumes / name / "_data")


def load(store: Store, name: str) -> VolumeRecord | Broken:
    """Volume ``name``'s record (``name`` a directory entry of the store's, or checked)."""
    return records.load(store.volumes / name / RECORD, VolumeRecord, name=name)


def create(store: Store, name: str) -> VolumeRecord:
    """Create volume ``name`` if it does not exist; return its record. Caller locks."""
    check_name("volume", name)
    path = store.volumes / name
    record = load(store, name)
    if not isinstance(record, Broken):
        return record
    if path.exists():
        raise PyvmmError(f"volume {name} is broken ({record.reason}): remove it first")
    store.volumes.mkdir(parents=True, exist_ok=True)
    os.mkdir(path, 0o755)
    os.mkdir(path / "_data", 0o755)
    record = VolumeRecord(name=name, created=time.time())
    records.write(path / RECORD, record)
    return record


def get(store: Store, name: str) -> VolumeRecord | Broken:
    """Volume ``name``'s record, or Broken; a one-line error if there is no such volume."""
    check_name("volume", name)
    if not (store.volumes / name).is_dir():
        raise PyvmmError(f"no such volume: {name}")
    return load(store, name)


def list_volumes(store: Store) -> list[tuple[str, VolumeRecord | Broken]]:
    """Every volume directory's name and record, sorted by name."""
    if not store.volumes.is_dir():
        return []
    return [(n, load(store, n)) for n in sorted(os.listdir(store.volumes))]


def remove(store: Store, name: str, users: list[str]) -> None:
    """Delete volume ``name`` and its data, unless containers in ``users`` refer to it;
    a broken volume goes like any other."""
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
    record = load(store, name)
    if isinstance(record, Broken):
        raise PyvmmError(f"volume {name} is broken: {record.reason}")
    if record.populated:
        return
    data = data_dir(store, name)
    if stat.S_ISDIR(os.stat(image_path).st_mode) and not os.listdir(data):
        with fdtree.opened(Path(image_path)) as src, fdtree.opened(Path(data)) as dst:
            fdtree.copy(src, dst)  # the image's tree: as deep and as linked as it likes
    record.populated = True
    records.write(store.volumes / name / RECORD, record)
