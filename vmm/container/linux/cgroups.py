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
import re
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from vmm.container.linux._libc import ffi, lib
from vmm.errors import PyvmmError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "pyvmm"  # the default state directory's; see Store.cgroup_parent
CFS_PERIOD_US = 100_000
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}  # Docker's, binary


def parse_size(text: str) -> int:
    """A memory limit as ``--memory`` takes it, in ``pyvmm container run`` and
    ``pyvmm-runtime update``: ``64M``, ``1g``, ``4096`` to bytes."""
    m = re.fullmatch(r"(\d+)([bkmgBKMG]?)", text.strip())
    if not m or int(m.group(1)) == 0:
        raise PyvmmError(f"bad memory size {text!r}: use a number with an optional K, M or G")
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]


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
    """Resource limits of one container; None means unlimited.

    ``pyvmm container`` sets the first three and the device rules; an OCI bundle's
    ``linux.resources`` may say more (``spec.limits``). ``devices`` None means no device
    rules at all (privileged).
    """

    memory: int | None = None  # bytes
    pids: int | None = None
    cpus: float | None = None
    memory_swap: int | None = None  # memory plus swap, bytes
    memory_reservation: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    cpu_quota: int | None = None  # microseconds per cpu_period (OCI's own, not ``cpus``)
    cpu_period: int | None = None
    cpu_rt_runtime: int | None = None
    cpu_rt_period: int | None = None
    memory_kernel: int | None = None
    memory_kernel_tcp: int | None = None
    memory_swappiness: int | None = None
    oom_kill_disable: bool | None = None
    devices: list[DeviceRule] | None = None


# The devices every OCI container may use whatever its rules say (runtime-spec
# config-linux.md "Default Devices", and /dev/pts/* and /dev/ptmx for terminals).
DEFAULT_DEVICE_RULES = (
    DeviceRule(True, "c", None, None, "m"),  # mknod of any node, as runc (CAP_MKNOD decides)
    DeviceRule(True, "b", None, None, "m"),
    *(DeviceRule(True, "c", major, minor, "rwm")
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2), (136, None))),
)  # fmt: skip


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@contextlib.contextmanager
def _unless_gone():
    """Reading or writing a cgroup's file while another process removes the cgroup (a
    container's monitor cleaning up as `rm -f` does): before the rmdir the path is gone
    (ENOENT); a file opened before it answers ENODEV (the kernel finds the cgroup
    dying). Either way the cgroup holds nothing more, and there is nothing to do."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENODEV):
            raise


def _read_keys(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file such as ``memory.events`` or ``memory.stat``."""
    values = {}
    with _unless_gone():
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[k] = int(v)
    return values


def _read_key(path: Path, key: str) -> int | None:
    """The value of ``key`` in a flat-keyed cgroup file."""
    return _read_keys(path).get(key)


def _read_text(path: Path) -> str | None:
    with _unless_gone():
        return path.read_text()
    return None


def _runc_stats(total: int, percpu: list[int], user_system: list[int], user_hz: bool,
                memory: dict[str, int], memory_stat: dict[str, int],
                pids: tuple[int, int | None]) -> dict:  # fmt: skip
    """The figures in runc's JSON shape (types.Stats): cpu.usage in nanoseconds (v1's
    cpuacct.stat counts USER_HZ ticks: converted), a limit of "max" as 0, as runc;
    memory.stat as it is."""
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK") if user_hz else 1
    user, system = (n * tick for n in user_system)
    return {
        "cpu": {"usage": {"total": total, "percpu": percpu, "kernel": system, "user": user},
                "throttling": {}},
        "memory": {"usage": memory, "stats": memory_stat},
        "pids": {"current": pids[0], "limit": pids[1] or 0},
    }  # fmt: skip


def _read_int(path: Path) -> int | None:
    with _unless_gone(), contextlib.suppress(ValueError):
        return int(path.read_text())
    return None


def _mkdir_under_parent(parent: Path, name: str, inherit: tuple[str, ...] = (),
                        exist_ok: bool = False) -> Path:  # fmt: skip
    """Create ``parent/name``, and the parents first if needed.

    Another pyvmm may remove the parent when its own last container ends, between our
    mkdir of the parent and of the child; then we simply try again. ``inherit`` names
    files (v1 cpuset's) that a new cgroup must copy from its parent before use.
    ``exist_ok``: an existing ``parent/name`` is used as it is (an OCI ``cgroupsPath``
    may name a cgroup an engine made, and runc joins it).
    """
    for _ in range(10):
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir()
                _inherit(d, inherit)
        try:
            (parent / name).mkdir()
            _inherit(parent / name, inherit)
            return parent / name
        except FileExistsError:
            if not exist_ok:
                raise
            return parent / name
        except FileNotFoundError:
            continue
    raise PyvmmError(f"cannot create cgroup {parent / name}")


def _inherit(path: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if not (path / name).read_text().strip():
            _write(path / name, (path.parent / name).read_text().strip())


def _rmdir(path: Path, kill_file: Path | None) -> None:
    """Remove a cgroup directory, first killing anything still in it."""
    if not path.is_dir():
        return
    for _ in range(200):
        if kill_file is not None and kill_file.exists():
            with _unless_gone():
                _write(kill_file, "1")
        else:
            with _unless_gone():
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
    """The cgroup ``parent/cid`` of one container, whichever hierarchy the host uses.

    ``parent`` may be several levels deep (an OCI ``cgroupsPath`` such as
    ``/libpod_parent/libpod-ID``). ``oci`` containers always join the freezer too
    (``pause``, and a reliable ``kill --all``) and the pids controller (``ps``).
    """

    version: str

    def __init__(self, cid: str, parent: str = PARENT, root: Path = CGROUP_ROOT,
                 oci: bool = False):  # fmt: skip
        self.cid = cid
        self.parent = parent.strip("/")
        self.root = root
        self.oci = oci

    @abstractmethod
    def create(self, limits: Limits) -> None:
        """Create the cgroup with ``limits``; on failure leave nothing behind."""

    @abstractmethod
    def update(self, limits: Limits) -> None:
        """Change the limits ``limits`` sets (None fields stay as they are)."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the cgroup."""

    def fork_inside(self) -> int | None:
        """``os.fork()``, the child born inside the cgroup, where the hierarchy can do
        that; None where it cannot, and then the caller forks and calls ``add``."""
        return None

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process in the cgroup."""

    @abstractmethod
    def host_paths(self) -> dict[str, Path]:
        """The cgroup's directories that exist, by controller ("" on v2)."""

    @abstractmethod
    def freeze(self, frozen: bool) -> None:
        """Freeze (pause) or thaw every process in the cgroup."""

    @abstractmethod
    def frozen(self) -> bool: ...

    @abstractmethod
    def peak_memory(self) -> int | None:
        """The most memory the container has used, in bytes, if the kernel says."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this container."""

    @abstractmethod
    def stats(self) -> dict:
        """CPU, memory and pids figures as runc's ``events --stats`` prints them (its
        libcontainer/cgroups Stats in JSON: nanoseconds, bytes, counts)."""

    @abstractmethod
    def remove(self) -> None:
        """Kill whatever is left in the cgroup and remove it (idempotent)."""

    @abstractmethod
    def exists(self) -> bool: ...


def _read_pids(path: Path) -> list[int]:
    with _unless_gone():
        return [int(p) for p in path.read_text().split()]
    return []


def hierarchies(root: Path = CGROUP_ROOT) -> tuple[str, ...]:
    """The names under ``root`` on which a cgroup hierarchy is mounted (symlinks such
    as ``cpu`` -> ``cpu,cpuacct`` left out): every v1 controller's, named ones such as
    ``systemd`` (name=systemd), and a hybrid host's cgroup2 at ``unified``."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fs_type = fields[fields.index("-") + 1]
            where = Path(fields[4].replace("\\040", " "))
            if fs_type in ("cgroup", "cgroup2") and where.parent == root:
                found.append(where.name)
    return tuple(dict.fromkeys(found))


class CgroupV1(Cgroup):
    """One directory per controller hierarchy, each with that controller's files.

    The memory hierarchy is always used (it measures the peak); the others only when
    limited, as each hierarchy a process joins is one more write on the way to its
    first instruction. OCI containers join every hierarchy the host has, as runc does:
    engines read a container's figures (``podman stats``'s CPU from cpuacct,
    systemd's view from name=systemd) in its own cgroup of each, not the parent's.
    """

    version = "v1"
    CONTROLLERS = ("memory", "pids", "cpu", "cpuset", "devices", "freezer")

    def _dirs(self) -> dict[str, Path]:
        names = self.CONTROLLERS
        if self.oci:  # a co-mounted "cpu,cpuacct" is joined through its "cpu" link
            names += tuple(h for h in hierarchies(self.root)
                           if not set(h.split(",")) & set(self.CONTROLLERS))  # fmt: skip
        return {c: self.root / c / self.parent / self.cid for c in names}

    def _files(self, limits: Limits) -> dict[str, list[tuple[str, str]]]:
        files: dict[str, list[tuple[str, str]]] = {c: [] for c in self._dirs()}
        if limits.memory is not None:
            files["memory"] += [("memory.limit_in_bytes", str(limits.memory))]
            # Without swap accounting there is no memsw file, and no swap to escape to.
            swap = limits.memory_swap if limits.memory_swap is not None else limits.memory
            files["memory"] += [("memory.memsw.limit_in_bytes", str(swap))]
        if limits.memory_reservation is not None:
            files["memory"] += [("memory.soft_limit_in_bytes", str(limits.memory_reservation))]
        if limits.memory_kernel is not None:  # not enforced since Linux 5.16 (see _write_files)
            files["memory"] += [("memory.kmem.limit_in_bytes", str(limits.memory_kernel))]
        if limits.memory_kernel_tcp is not None:
            files["memory"] += [("memory.kmem.tcp.limit_in_bytes", str(limits.memory_kernel_tcp))]
        if limits.memory_swappiness is not None:
            files["memory"] += [("memory.swappiness", str(limits.memory_swappiness))]
        if limits.oom_kill_disable is not None:
            files["memory"] += [("memory.oom_control", str(int(limits.oom_kill_disable)))]
        if limits.pids is not None:
            files["pids"].append(("pids.max", str(limits.pids)))
        if limits.cpus is not None:
            files["cpu"] += [
                ("cpu.cfs_period_us", str(CFS_PERIOD_US)),
                ("cpu.cfs_quota_us", str(int(limits.cpus * CFS_PERIOD_US))),
            ]
        if limits.cpu_period is not None:
            files["cpu"].append(("cpu.cfs_period_us", str(limits.cpu_period)))
        if limits.cpu_quota is not None:
            files["cpu"].append(("cpu.cfs_quota_us", str(limits.cpu_quota)))
        if limits.cpu_rt_period is not None:
            files["cpu"].append(("cpu.rt_period_us", str(limits.cpu_rt_period)))
        if limits.cpu_rt_runtime is not None:
            files["cpu"].append(("cpu.rt_runtime_us", str(limits.cpu_rt_runtime)))
        if limits.cpu_shares is not None:
            files["cpu"].append(("cpu.shares", str(limits.cpu_shares)))
        if limits.cpuset_cpus:
            files["cpuset"].append(("cpuset.cpus", limits.cpuset_cpus))
        if limits.cpuset_mems:
            files["cpuset"].append(("cpuset.mems", limits.cpuset_mems))
        for rule in limits.devices or ():  # in order: "deny all" first, then what is allowed
            files["devices"].append(("devices.allow" if rule.allow else "devices.deny", rule.v1()))
        return files

    def _write_files(self, files: dict[str, list[tuple[str, str]]]) -> None:
        for controller, path in self._dirs().items():
            for name, value in files[controller]:
                if not (path / name).exists() and name.startswith("memory.memsw"):
                    continue  # no swap accounting: no swap to escape to either
                try:
                    _write(path / name, value)
                except OSError as e:
                    # Kernel memory limits are gone since Linux 5.16 (the file stays and
                    # refuses writes); runc ignores the field for that reason too.
                    if name != "memory.kmem.limit_in_bytes" or e.errno != errno.EOPNOTSUPP:
                        raise OSError(e.errno, f"cgroup {name}={value}: {e.strerror}") from None

    def create(self, limits: Limits) -> None:
        files = self._files(limits)
        try:
            for controller, path in self._dirs().items():
                mounted = (self.root / controller).is_dir()
                if not (files[controller] or controller == "memory" or self.oci and mounted):
                    continue
                if not mounted:
                    raise PyvmmError(f"cgroup v1 controller {controller} is not mounted")
                cpuset = "cpuset" in controller.split(",")
                inherit = ("cpuset.cpus", "cpuset.mems") if cpuset else ()
                _mkdir_under_parent(path.parent, self.cid, inherit, exist_ok=self.oci)
            self._write_files(files)
        except BaseException:
            self.remove()
            raise

    def update(self, limits: Limits) -> None:
        files = self._files(limits)
        for controller, path in self._dirs().items():
            if files[controller] and not path.is_dir():
                raise PyvmmError(f"the container has no {controller} cgroup to update")
        self._write_files(files)

    def add(self, pid: int) -> None:
        for path in self._dirs().values():
            if path.is_dir():
                _write(path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _read_pids(self._dirs()["memory"] / "cgroup.procs")

    def host_paths(self) -> dict[str, Path]:
        return {c: p for c, p in self._dirs().items() if p.is_dir()}

    def freeze(self, frozen: bool) -> None:
        state = self._dirs()["freezer"] / "freezer.state"
        _write(state, "FROZEN" if frozen else "THAWED")
        # FREEZING until every task has stopped. A thaw is not waited for: its tasks
        # may end at once (a SIGKILL was waiting), and their cgroup be removed.
        for _ in range(1000 if frozen else 0):
            if state.read_text().strip() in ("FROZEN", "THAWED"):
                return
            time.sleep(0.001)

    def frozen(self) -> bool:
        with _unless_gone():
            return (self._dirs()["freezer"] / "freezer.state").read_text().strip() == "FROZEN"
        return False

    def peak_memory(self) -> int | None:
        return _read_int(self._dirs()["memory"] / "memory.max_usage_in_bytes")

    def oom_killed(self) -> bool:
        return bool(_read_key(self._dirs()["memory"] / "memory.oom_control", "oom_kill"))

    def stats(self) -> dict:
        d = self._dirs()
        acct = d.get("cpuacct", d["cpu"])
        percpu = (_read_text(acct / "cpuacct.usage_percpu") or "").split()
        memory = {k: _read_int(d["memory"] / f"memory.{f}") or 0 for k, f in
                  (("usage", "usage_in_bytes"), ("max", "max_usage_in_bytes"),
                   ("limit", "limit_in_bytes"), ("failcnt", "failcnt"))}  # fmt: skip
        return _runc_stats(
            total=_read_int(acct / "cpuacct.usage") or 0,
            percpu=[int(n) for n in percpu],
            user_system=[_read_key(acct / "cpuacct.stat", k) or 0 for k in ("user", "system")],
            user_hz=True,
            memory=memory,
            memory_stat=_read_keys(d["memory"] / "memory.stat"),
            pids=(_read_int(d["pids"] / "pids.current") or 0, _read_int(d["pids"] / "pids.max")),
        )

    def remove(self) -> None:
        if self.frozen():  # frozen tasks cannot die
            with _unless_gone():
                self.freeze(False)
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

    def _files(self, limits: Limits) -> list[tuple[str, str]]:
        files = []
        if limits.memory is not None:
            swap = 0 if limits.memory_swap is None else max(limits.memory_swap - limits.memory, 0)
            files += [("memory.max", str(limits.memory)), ("memory.swap.max", str(swap))]
            files += [("memory.oom.group", "1")]  # an OOM kill takes the whole container
        if limits.memory_reservation is not None:
            files.append(("memory.low", str(limits.memory_reservation)))
        if limits.pids is not None:
            files.append(("pids.max", str(limits.pids)))
        if limits.cpus is not None:
            files.append(("cpu.max", f"{int(limits.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}"))
        if limits.cpu_quota is not None or limits.cpu_period is not None:
            quota = "max" if limits.cpu_quota is None else str(limits.cpu_quota)
            files.append(("cpu.max", f"{quota} {limits.cpu_period or CFS_PERIOD_US}"))
        if limits.memory_swappiness is not None or limits.cpu_rt_runtime is not None:
            raise PyvmmError("memory.swappiness and cpu.realtime* have no cgroup v2 file")
        if limits.cpu_shares is not None:  # the conversion runc and crun use
            files.append(("cpu.weight", str(1 + (limits.cpu_shares - 2) * 9999 // 262142)))
        if limits.cpuset_cpus:
            files.append(("cpuset.cpus", limits.cpuset_cpus))
        if limits.cpuset_mems:
            files.append(("cpuset.mems", limits.cpuset_mems))
        return files

    def _write_files(self, files: list[tuple[str, str]]) -> None:
        for name, value in files:
            if (self.path / name).exists() or name != "memory.swap.max":
                _write(self.path / name, value)

    def create(self, limits: Limits) -> None:
        files = self._files(limits)
        wanted = sorted({name.partition(".")[0] for name, _ in files})
        try:
            self._enable(self.root, wanted)  # fail before creating anything
            _mkdir_under_parent(self.path.parent, self.cid, exist_ok=self.oci)
            # The parents may predate this container's needs; they have no processes
            # of their own, so their children may be given controllers at any time.
            parent = self.root
            for part in self.parent.split("/") if self.parent else ():
                parent = parent / part
                self._enable(parent, wanted)
            self._write_files(files)
        except BaseException:
            self.remove()
            raise

    def update(self, limits: Limits) -> None:
        self._write_files(self._files(limits))

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

    def pids(self) -> list[int]:
        return _read_pids(self.path / "cgroup.procs")

    def host_paths(self) -> dict[str, Path]:
        return {"": self.path}

    def freeze(self, frozen: bool) -> None:
        _write(self.path / "cgroup.freeze", "1" if frozen else "0")
        for _ in range(1000):
            if _read_key(self.path / "cgroup.events", "frozen") == int(frozen):
                return
            time.sleep(0.001)

    def frozen(self) -> bool:
        return bool(_read_key(self.path / "cgroup.events", "frozen"))

    def peak_memory(self) -> int | None:
        return _read_int(self.path / "memory.peak")  # Linux 5.19 and later

    def oom_killed(self) -> bool:
        return bool(_read_key(self.path / "memory.events", "oom_kill"))

    def stats(self) -> dict:
        cpu = self.path / "cpu.stat"  # microseconds
        memory = {"usage": _read_int(self.path / "memory.current") or 0,
                  "max": _read_int(self.path / "memory.peak") or 0,
                  "limit": _read_int(self.path / "memory.max") or 0,
                  "failcnt": _read_key(self.path / "memory.events", "max") or 0}  # fmt: skip
        return _runc_stats(
            total=(_read_key(cpu, "usage_usec") or 0) * 1000,
            percpu=[],
            user_system=[(_read_key(cpu, k) or 0) * 1000 for k in ("user_usec", "system_usec")],
            user_hz=False,
            memory=memory,
            memory_stat=_read_keys(self.path / "memory.stat"),
            pids=(_read_int(self.path / "pids.current") or 0, _read_int(self.path / "pids.max")),
        )

    def remove(self) -> None:
        _rmdir(self.path, self.path / "cgroup.kill")  # cgroup.kill: Linux 5.14 and later

    def exists(self) -> bool:
        return self.path.is_dir()


def host_version(root: Path = CGROUP_ROOT) -> str:
    """'v2' on a unified host, else 'v1' (a hybrid host's controllers are all in v1)."""
    return "v2" if (root / "cgroup.controllers").exists() else "v1"


def for_container(cid: str, version: str | None = None, parent: str = PARENT,
                  root: Path = CGROUP_ROOT, oci: bool = False) -> Cgroup:  # fmt: skip
    """The cgroup ``parent/cid`` in the host's hierarchy (or ``version``'s)."""
    cls = CgroupV2 if (version or host_version(root)) == "v2" else CgroupV1
    return cls(cid, parent, root, oci)
