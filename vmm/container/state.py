"""The state directory: where images, layers, containers and volumes are recorded.

Layout under the root (``/var/lib/pyvmm``, ``--root`` or ``$PYVMM_ROOT``)::

    lock                            flock'ed by every pyvmm process that changes state
    layers/sha256/<hex>/diff/       one extracted layer, named by the sha256 of its tar
    layers/sha256/<hex>/layer.json  its size
    images/<name>/<tag>.json        layer digests (bottom first) and run defaults
    containers/<id>/container.json  one container (``ContainerRecord``): spec, status, pids
    containers/<id>/config.json     its OCI bundle's config (``bundle.py``), rootfs ``merged``
    containers/<id>/upper, work     its writable overlay layer
    containers/<id>/log             what it printed
    names/<name> -> <id>            container names, each reserved by one symlink
    build-cache/<key>.json          a build step's layer, by its cache key (``build.py``)
    volumes/<name>/_data            a named volume's files; volume.json beside it
    networks/<name>/network.json    a container network and its IPAM (network.py)
    endpoints/<id>/endpoint.json    a container's place on a network; its /etc files

A started container is also in the OCI core's state (``runtime.py``), under
``/run/pyvmm/<id>/`` for every state directory (ids are 256 random bits): in /run, as
containerd keeps runc's, so it lives as long as the processes it describes (a reboot
clears both) and never takes space from the state directory's disk.

Every record is a typed dataclass, a JSON file replaced atomically and read through
one loader (``records.py``: a corrupt one is ``Broken``, never a crash), and every
change happens under one exclusive ``flock`` on ``lock``, so concurrent pyvmm
processes see either the old or the new state, never half of one. Running containers
are never waited on under the lock: it is held for milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

from vmm.container import records
from vmm.container.cgroups import Limits
from vmm.container.names import check_name, checker
from vmm.container.records import Digest
from vmm.container.security import Security

DEFAULT_ROOT = Path("/var/lib/pyvmm")
RUNTIME_ROOT = Path("/run/pyvmm")  # the OCI core's root (``runtime.py``) for the engine


class Store:
    """Paths into one state directory, and the lock that guards them."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        # Containers' cgroups are <parent>/<id>. Each state directory is a pyvmm of its
        # own, so each gets its own parent: pyvmm for the default, pyvmm-tmp-x for /tmp/x.
        self.cgroup_parent = "pyvmm" + (
            "" if self.root == DEFAULT_ROOT else re.sub(r"[^\w.-]", "-", str(self.root))[:200]
        )
        self.layers = self.root / "layers" / "sha256"
        self.images = self.root / "images"
        self.containers = self.root / "containers"
        self.volumes = self.root / "volumes"
        self.names = self.root / "names"
        self.networks = self.root / "networks"
        self.endpoints = self.root / "endpoints"
        self.build_cache = self.root / "build-cache"
        self.runtime = RUNTIME_ROOT

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state lock: one pyvmm process changes the state at a time."""
        path = self.root / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the first use of this state directory
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _check_id(value: str) -> None:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{value!r:.80} is not a container id (64 hex digits)")


def _check_mount_type(value: str) -> None:
    if value not in ("bind", "volume"):
        raise ValueError(f"{value!r:.20} is not bind or volume")


ContainerId = Annotated[str, _check_id]
VolumeName = Annotated[str, checker("volume")]
ContainerName = Annotated[str, checker("container")]


@dataclass
class Mount:
    """One ``-v``: a named volume (``source`` its name) or a bind mount (``source`` a
    host path), at ``target`` in the container."""

    type: Annotated[str, _check_mount_type]
    source: str
    target: str
    ro: bool

    def __post_init__(self) -> None:
        if self.type == "volume":  # removed with the container that made it: a name only
            check_name("volume", self.source)


@dataclass
class Tmpfs:
    """One ``--tmpfs``: a tmpfs at ``target`` with these mount options."""

    target: str
    options: list[str]


@dataclass
class ContainerRecord:
    """One ``pyvmm container``'s ``containers/<id>/container.json``: what it was created
    from (its bundle's config.json is made from these), and its life so far. The
    container's ``status`` is created, starting, running or exited; a process is named
    for good by its pid and its start time (``proc.process_start``)."""

    id: ContainerId
    name: ContainerName
    image: str  # NAME:TAG, as given
    image_id: str
    layers: list[Digest]  # bottom first
    command: list[str]
    env: list[str]
    cwd: str
    hostname: str
    mounts: list[Mount]
    limits: Limits
    security: Security
    auto_remove: bool
    created: float
    new_volumes: list[VolumeName] = field(default_factory=list)  # made for it, removed with it
    # Who its processes run as: -u USER[:GROUP] as given, or the image's User, resolved
    # in the container's own files when its config.json is written (users.py).
    user: str = ""
    tty: bool = False  # -t: its stdio is a pseudo-terminal (stdio.py)
    interactive: bool = False  # -i: an attached start passes the caller's stdin on
    read_only: bool = False  # --read-only: its root file system is
    tmpfs: list[Tmpfs] = field(default_factory=list)
    init: bool = False  # --init: pyvmm-init (reaper.c) is its PID 1, running the command
    status: str = "created"
    monitor_pid: int | None = None  # the pyvmm process supervising it
    monitor_start: int | None = None
    pid: int | None = None  # its PID 1, on the host
    pid_start: int | None = None
    cgroup: str | None = None  # the cgroup version it was started under ("v1", "v2")
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    oom_killed: bool | None = None
    peak_memory: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds after the request

    def update(self, **changes) -> None:
        """Set several fields at once; a name that is not a field is a bug, not data."""
        for name, value in changes.items():
            if name not in _CONTAINER_FIELDS:
                raise AttributeError(f"ContainerRecord has no field {name!r}")
            setattr(self, name, value)

    def to_json(self) -> dict:
        return records.to_json(self)


_CONTAINER_FIELDS = {f.name for f in fields(ContainerRecord)}
