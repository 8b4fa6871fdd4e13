"""One ``pyvmm container``'s record (``containers/<id>/container.json``): what it was
created from and its life so far. The engine's, over the store's loader
(``store/records.py``); the state directory itself is ``store/state.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Annotated

from vmm.container.engine.security import Security
from vmm.container.linux.cgroups import Limits
from vmm.container.store import records
from vmm.container.store.names import check_name, checker
from vmm.container.store.records import Digest
from vmm.container.store.state import Tmpfs


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
