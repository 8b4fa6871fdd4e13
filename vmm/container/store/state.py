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
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Tmpfs:
    """One ``--tmpfs``: a tmpfs at ``target`` with these mount options."""

    target: str
    options: list[str]
