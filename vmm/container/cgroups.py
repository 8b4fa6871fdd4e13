"""cgroups: the kernel's accounting and limits for one container's processes.

Two hierarchies exist in the wild and this module implements one interface, ``Cgroup``,
for each:

- **v1** (``CgroupV1``): one hierarchy per controller, mounted at
  ``/sys/fs/cgroup/<controller>``; the container gets ``pyvmm/<id>`` in each
  controller it uses, and each has its own file names (``memory.limit_in_bytes``,
  ``pids.max``, ``cpu.cfs_quota_us``...). This machine is v1 ("hybrid": an empty
  cgroup2 is mounted at ``/sys/fs/cgroup/unified`` but owns no controllers).
- **v2** (``CgroupV2``): a single tree at ``/sys/fs/cgroup``; controllers are switched
  on for children through ``cgroup.subtree_control``, and the files are
  ``memory.max``, ``memory.peak``, ``memory.events``, ``pids.max``, ``cpu.max``.
  (Documentation/admin-guide/cgroup-v2.rst in the kernel tree.)

The container's first process is in its cgroup before it execs, so the command and
everything it forks are accounted from their first instruction. On v2 it is born
there (clone3 with CLONE_INTO_CGROUP). On v1 it must be moved, and moving a process
between cgroups can wait for a whole RCU grace period (5-15 ms here: the kernel's
cgroup_threadgroup_rwsem), so the runtime does it while the process sets up its
namespaces and mounts, not before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from vmm.container._libc import ffi, lib
from vmm.errors import PyvmmError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "pyvmm"  # the default state directory's; see Store.cgroup_parent
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class DeviceRule:
    """One OCI ``linux.resources.devices`` entry: may the container create (m), read (r)
    or write (w) device nodes of ``type`` (a: all, c: char, b: block) and number
    ``major``:``minor`` (None: any)?"""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def v1(self) -> str:
        """The rule as cgroup v1's devices.allow/devices.deny line: "c 1:3 rwm"."""
        major, minor = ("*" if n is None else n for n in (self.major, self.minor))
        return f"{self.type} {major}:{minor} {self.access}"


@dataclass
class Limits:
    """Resource limits of one container (OCI ``linux.resources``); None means unlimited,
    and ``devices`` None means no device rules at all (privileged)."""

    memory: int | None = None  # bytes
    pids: int | None = None
    cpus: float | None = None
    devices: list[DeviceRule] | None = None

    def __post_init__(self) -> None:
        if self.devices is not None:  # as read back from JSON
            self.devices = [d if isinstance(d, DeviceRule) else DeviceRule(**d)
                            for d in self.devices]  # fmt: skip


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file such as ``memory.events``."""
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    return None


def _read_int(path: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(path.read_text())
    return None


def _mkdir_under_parent(parent: Path, name: str) -> Path:
    """Create ``parent/name``, and the shared parent first if needed.

    Another pyvmm may remove the parent when its own last container ends, between our
    mkdir of the parent and of the child; then we simply try again.
    """
    for _ in range(10):
        with contextlib.suppress(FileExistsError):
            parent.mkdir()
        try:
            (parent / name).mkdir()
            return parent / name
        except FileNotFoundError:
            continue
    raise PyvmmError(f"cannot create cgroup {parent / name}")


def _rmdir(path: Path, kill_file: Path | None) -> None:
    """Remove a cgroup directory, first killing anything still in it."""
    if not path.is_dir():
        return
    for _ in range(200):
        if kill_file is not None and kill_file.exists():
            _write(kill_file, "1")
        else:
            with contextlib.suppress(FileNotFoundError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError:  # EBUSY while killed tasks are still exiting
            time.sleep(0.005)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the shared parent, once its last container is gone


class Cgroup(ABC):
    """The cgroup of one container, whichever hierarchy the host uses."""

    version: str

    def __init__(self, cid: str, parent: str = PARENT, root: Path = CGROUP_ROOT):
        self.cid = cid
        self.parent = parent
        self.root = root

    @abstractmethod
    def create(self, limits: Limits) -> None:
        """Create the cgroup with ``limits``; on failure leave nothing behind."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup."""

    def fork_inside(self) -> int | None:
        """``os.fork()``, the child born inside the cgroup, where the hierarchy can do
        that; None where it cannot, and then the caller forks and calls ``add``."""
        return None

    @abstractmethod
    def peak_memory(self) -> int | None:
        """The most memory the container has used, in bytes, if the kernel says."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this container."""

    @abstractmethod
    def remove(self) -> None:
        """Kill whatever is left in the cgroup and remove it (idempotent)."""

    @abstractmethod
    def exists(self) -> bool: ...


class CgroupV1(Cgroup):
    """One directory per controller hierarchy, each with that controller's files.

    The memory hierarchy is always used (it measures the peak); pids, cpu and devices
    only when limited, as each hierarchy a process joins is one more write on the way
    to its first instruction. The devices controller is v1's alone: it keeps a list of
    the device numbers the cgroup's processes may create or open (Documentation/
    admin-guide/cgroup-v1/devices.rst).
    """

    version = "v1"

    def _dirs(self) -> dict[str, Path]:
        controllers = ("memory", "pids", "cpu", "devices")
        return {c: self.root / c / self.parent / self.cid for c in controllers}

    def create(self, limits: Limits) -> None:
        files: dict[str, list[tuple[str, str]]] = {c: [] for c in self._dirs()}
        if limits.memory is not None:
            files["memory"] += [("memory.limit_in_bytes", str(limits.memory))]
            # Without swap accounting there is no memsw file, and no swap to escape to.
            files["memory"] += [("memory.memsw.limit_in_bytes", str(limits.memory))]
        if limits.pids is not None:
            files["pids"].append(("pids.max", str(limits.pids)))
        if limits.cpus is not None:
            files["cpu"] += [
                ("cpu.cfs_period_us", str(CFS_PERIOD_US)),
                ("cpu.cfs_quota_us", str(int(limits.cpus * CFS_PERIOD_US))),
            ]
        for rule in limits.devices or ():  # in order: "deny all" first, then what is allowed
            files["devices"].append(("devices.allow" if rule.allow else "devices.deny", rule.v1()))
        try:
            for controller, path in self._dirs().items():
                if controller != "memory" and not files[controller]:
                    continue
                if not (self.root / controller).is_dir():
                    raise PyvmmError(f"cgroup v1 controller {controller} is not mounted")
                _mkdir_under_parent(path.parent, self.cid)
                for name, value in files[controller]:
                    if (path / name).exists() or not name.startswith("memory.memsw"):
                        _write(path / name, value)
        except BaseException:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        for path in self._dirs().values():
            if path.is_dir():
                _write(path / "cgroup.procs", str(pid))

    def peak_memory(self) -> int | None:
        return _read_int(self._dirs()["memory"] / "memory.max_usage_in_bytes")

    def oom_killed(self) -> bool:
        return bool(_read_key(self._dirs()["memory"] / "memory.oom_control", "oom_kill"))

    def remove(self) -> None:
        for path in self._dirs().values():
            _rmdir(path, None)

    def exists(self) -> bool:
        return any(p.is_dir() for p in self._dirs().values())


class CgroupV2(Cgroup):
    """One directory in the unified tree; controllers enabled from the top down.

    v2 has no devices controller: device access is decided by an eBPF program
    attached to the cgroup (BPF_CGROUP_DEVICE), which runc and crun generate from the
    same rules. pyvmm does not (yet): on v2, ``Limits.devices`` is not enforced, and
    the container is kept from device nodes by its minimal /dev and by not having
    CAP_MKNOD (see ``capabilities.py``)."""

    version = "v2"

    @property
    def path(self) -> Path:
        return self.root / self.parent / self.cid

    def _enable(self, parent: Path, wanted: list[str]) -> None:
        """Switch on ``wanted`` controllers for the children of ``parent``."""
        available = (parent / "cgroup.controllers").read_text().split()
        missing = [c for c in wanted if c not in available]
        if missing:
            raise PyvmmError(f"cgroup v2 at {parent} has no {' or '.join(missing)} controller")
        if wanted:
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def create(self, limits: Limits) -> None:
        files = []
        if limits.memory is not None:
            files += [("memory.max", str(limits.memory)), ("memory.swap.max", "0")]
            files += [("memory.oom.group", "1")]  # an OOM kill takes the whole container
        if limits.pids is not None:
            files.append(("pids.max", str(limits.pids)))
        if limits.cpus is not None:
            files.append(("cpu.max", f"{int(limits.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}"))
        wanted = sorted({name.partition(".")[0] for name, _ in files})
        try:
            self._enable(self.root, wanted)  # fail before creating anything
            _mkdir_under_parent(self.path.parent, self.cid)
            # The parent may predate this container's needs; it has no processes of
            # its own, so its children may be given controllers at any time.
            self._enable(self.path.parent, wanted)
            for name, value in files:
                if (self.path / name).exists() or name != "memory.swap.max":
                    _write(self.path / name, value)
        except BaseException:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def fork_inside(self) -> int | None:
        """clone3(CLONE_INTO_CGROUP): the child never has to be moved (Linux 5.7)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            pid = lib.pyvmm_fork_into_cgroup(fd)
            err = ffi.errno
        finally:
            os.close(fd)
        if pid == -1:
            if err in (errno.ENOSYS, errno.E2BIG, errno.EINVAL):  # an older kernel
                return None
            raise OSError(err, f"clone3 into {self.path}: {os.strerror(err)}")
        return pid

    def peak_memory(self) -> int | None:
        return _read_int(self.path / "memory.peak")  # Linux 5.19 and later

    def oom_killed(self) -> bool:
        return bool(_read_key(self.path / "memory.events", "oom_kill"))

    def remove(self) -> None:
        _rmdir(self.path, self.path / "cgroup.kill")  # cgroup.kill: Linux 5.14 and later

    def exists(self) -> bool:
        return self.path.is_dir()


def host_version(root: Path = CGROUP_ROOT) -> str:
    """'v2' on a unified host, else 'v1' (a hybrid host's controllers are all in v1)."""
    return "v2" if (root / "cgroup.controllers").exists() else "v1"


def for_container(cid: str, version: str | None = None, parent: str = PARENT,
                  root: Path = CGROUP_ROOT) -> Cgroup:  # fmt: skip
    """The cgroup ``parent/cid`` in the host's hierarchy (or ``version``'s)."""
    cls = CgroupV2 if (version or host_version(root)) == "v2" else CgroupV1
    return cls(cid, parent, root)
