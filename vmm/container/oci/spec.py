"""The OCI runtime spec's ``config.json``, read into typed records and checked.

Everything a bundle can get wrong is found here, before the runtime creates anything:
a field this runtime does not implement is an error naming it (never silently
ignored: a container that runs without the seccomp filter or limit its author asked
for is worse than one that does not run), as is a wrong type, a relative path where
the spec wants an absolute one, an unknown namespace or mapping without a user
namespace. (opencontainers/runtime-spec v1.0.2 config.md and config-linux.md; a few
1.1 fields.)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from vmm.container import OCI_VERSION
from vmm.container.linux.cgroups import DEFAULT_DEVICE_RULES, DeviceRule, Limits
from vmm.container.linux.rlimits import Rlimit
from vmm.container.oci.hooks import Hook
from vmm.errors import PyvmmError

# config-linux.md "Namespaces": the spec's type names and the namespace files in
# /proc/PID/ns that a "path" must be.
NAMESPACES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
}
# config.md "Linux Hooks" (createRuntime, createContainer, startContainer: 1.0.2;
# prestart deprecated but still run).
HOOK_POINTS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
PROPAGATIONS = ("", "private", "rprivate", "shared", "rshared", "slave", "rslave",
                "unbindable", "runbindable")  # fmt: skip


# Fields the runtime spec defines that pyvmm does not implement: refused when set.
# Any other key pyvmm does not read is an unknown property, which config.md
# ("Extensibility") says a runtime MUST ignore.
UNSUPPORTED = {
    "": {"solaris", "windows", "vm", "zos"},
    "process": {"commandLine", "scheduler", "ioPriority", "execCPUAffinity"},
    "process.user": {"username"},
    "mounts": {"uidMappings", "gidMappings"},
    "linux": {"timeOffsets", "intelRdt", "personality", "memoryPolicy", "netDevices"},
    "linux.resources": {"blockIO", "hugepageLimits", "network", "rdma", "unified"},
    "linux.resources.memory": {"useHierarchy", "checkBeforeUpdate"},
    "linux.resources.cpu": {"idle", "burst"},
}


class SpecError(PyvmmError):
    """The bundle cannot be run as written; runc exits 1 for these."""

    exit_code = 1


class Fields:
    """One JSON object being read: typed getters, and the keys nobody asked for."""

    def __init__(self, obj: object, where: str):
        if not isinstance(obj, dict):
            raise SpecError(f"config.json: {where or 'the document'} must be an object")
        self.obj, self.where, self.seen = obj, where, set()

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple, default: object = None) -> object:
        self.seen.add(key)
        value = self.obj.get(key, default)
        if value is None:
            return default
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise SpecError(f"config.json: {self._name(key)} must be of type {names}")
        return value

    def strings(self, key: str) -> list[str]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) for v in values):
            raise SpecError(f"config.json: {self._name(key)} must be a list of strings")
        return values

    def sub(self, key: str) -> Fields:
        return Fields(self.get(key, dict, {}), self._name(key))

    def absolute(self, key: str, required: bool = False) -> str | None:
        path = self.get(key, str)
        if path is None and required:
            raise SpecError(f"config.json: {self._name(key)} is required")
        if path is not None and not path.startswith("/"):
            raise SpecError(f"config.json: {self._name(key)} must be an absolute path: {path}")
        return path

    def done(self) -> None:
        """Refuse the spec's fields this runtime does not implement, if set."""
        unsupported = UNSUPPORTED.get(re.sub(r"\[\d+\]", "", self.where), ())
        for key, value in self.obj.items():
            if key in unsupported and key not in self.seen and not unset(value):
                raise SpecError(f"config.json: {self._name(key)} is not supported by pyvmm")


def unset(value: object) -> bool:
    """Whether ``value`` says nothing: runc reads a zero, an empty string or list, and
    an object of nothing else, as a field left out (Docker always writes
    ``"blockIO": {"weight": 0}`` and ``"cpu": {"shares": 0}``, meaning "the default")."""
    if isinstance(value, dict):
        return all(unset(v) for v in value.values())
    return value is None or value is False or value == 0 or value in ("", [])


# Each dataclass here has a docstring: for one without, @dataclass writes one from
# inspect.signature, a cost every ``create`` paid.
@dataclass
class User:
    """Whom the command runs as (config.md "User")."""

    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: list[int] = field(default_factory=list)


@dataclass
class Process:
    """What the container runs, as whom and with which privileges (config.md "Process")."""

    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    terminal: bool = False
    user: User = field(default_factory=User)
    capabilities: dict[str, list[str]] | None = None
    rlimits: list[Rlimit] = field(default_factory=list)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    console_size: tuple[int, int] | None = None  # rows, columns


@dataclass
class Mount:
    """One of config.md's "Mounts", in the order given: later ones may cover earlier."""

    destination: str
    type: str | None = None
    source: str | None = None
    options: list[str] = field(default_factory=list)


@dataclass
class Namespace:
    """A namespace to make, or with ``path``, to join (config-linux.md "Namespaces")."""

    type: str
    path: str | None = None


@dataclass
class IdMapping:
    """One line of a user namespace's uid_map or gid_map (config-linux.md)."""

    container_id: int
    host_id: int
    size: int


@dataclass
class Device:
    """A device node the runtime makes in the container's /dev (config-linux.md)."""

    path: str
    type: str  # c, b, u, p
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass
class Spec:
    """A parsed ``config.json`` plus where the bundle is (the state's ``bundle``)."""

    bundle: str
    oci_version: str
    root: str  # the rootfs, absolute
    readonly: bool
    process: Process | None
    hostname: str | None
    domainname: str | None
    mounts: list[Mount]
    hooks: dict[str, list[Hook]]
    annotations: dict[str, str]
    namespaces: list[Namespace]
    uid_mappings: list[IdMapping]
    gid_mappings: list[IdMapping]
    devices: list[Device]
    cgroups_path: str | None
    resources: dict  # linux.resources, checked by cgroups.Resources
    sysctl: dict[str, str]
    masked_paths: list[str]
    readonly_paths: list[str]
    rootfs_propagation: str
    seccomp: dict | None  # linux.seccomp, handed to vmm.container.linux.seccomp as it is
    raw: dict = field(repr=False, default_factory=dict)

    def namespace(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


def parse_process(f: Fields) -> Process:
    args = f.strings("args")
    if not args:
        raise SpecError("config.json: process.args must not be empty")
    cwd = f.absolute("cwd", required=True)
    u = f.sub("user")
    user = User(
        uid=u.get("uid", int, 0),
        gid=u.get("gid", int, 0),
        umask=u.get("umask", int),
        additional_gids=u.get("additionalGids", list, []),
    )
    u.done()
    caps = None
    if "capabilities" in f.obj:
        c = f.sub("capabilities")
        caps = {s: c.strings(s) for s in CAPABILITY_SETS}
        c.done()
    rlimits = []
    for i, r in enumerate(f.get("rlimits", list, [])):
        rf = Fields(r, f"process.rlimits[{i}]")
        rlimits.append(
            Rlimit(rf.get("type", str, ""), rf.get("soft", int, 0), rf.get("hard", int, 0))
        )  # fmt: skip (checks its values)
        rf.done()
    console = f.sub("consoleSize")
    size = (console.get("height", int, 0), console.get("width", int, 0))
    console.done()
    f.get("apparmorProfile", str)
    if f.obj.get("apparmorProfile"):  # pyvmm applies no AppArmor profile: refuse, not ignore
        raise SpecError("config.json: process.apparmorProfile is not supported by pyvmm")
    _selinux_label(f, "selinuxLabel")
    process = Process(
        args=args,
        env=f.strings("env"),
        cwd=cwd,
        terminal=f.get("terminal", bool, False),
        user=user,
        capabilities=caps,
        rlimits=rlimits,
        no_new_privileges=f.get("noNewPrivileges", bool, False),
        oom_score_adj=f.get("oomScoreAdj", int),
        console_size=size if any(size) else None,
    )
    f.done()
    return process


def _selinux_label(f: Fields, key: str) -> None:
    """An SELinux label means nothing where SELinux is off (no selinuxfs): accepted
    there, as crun does; where it is on, pyvmm cannot apply it and refuses."""
    if f.get(key, str) and os.path.exists("/sys/fs/selinux/enforce"):
        raise SpecError(f"config.json: {f._name(key)} is not supported by pyvmm (SELinux)")


def _mappings(f: Fields, key: str) -> list[IdMapping]:
    out = []
    for i, m in enumerate(f.get(key, list, [])):
        mf = Fields(m, f"linux.{key}[{i}]")
        out.append(IdMapping(mf.get("containerID", int, 0), mf.get("hostID", int, 0),
                             mf.get("size", int, 0)))  # fmt: skip
        mf.done()
    return out


def _hooks(f: Fields) -> dict[str, list[Hook]]:
    hooks: dict[str, list[Hook]] = {}
    for point in HOOK_POINTS:
        for i, h in enumerate(f.get(point, list, [])):
            hf = Fields(h, f"hooks.{point}[{i}]")
            hook = Hook(hf.absolute("path", required=True), hf.strings("args"),
                        hf.strings("env"), hf.get("timeout", int))  # fmt: skip
            if hook.timeout is not None and hook.timeout <= 0:
                raise SpecError(f"config.json: hooks.{point}[{i}].timeout must be positive")
            hf.done()
            hooks.setdefault(point, []).append(hook)
    f.done()
    return hooks


def _devices(f: Fields) -> list[Device]:
    out = []
    for i, d in enumerate(f.get("devices", list, [])):
        df = Fields(d, f"linux.devices[{i}]")
        dev = Device(df.absolute("path", required=True), df.get("type", str, ""),
                     df.get("major", int, 0), df.get("minor", int, 0),
                     df.get("fileMode", int), df.get("uid", int), df.get("gid", int))  # fmt: skip
        if dev.type not in ("c", "b", "u", "p"):
            raise SpecError(f"config.json: linux.devices[{i}].type must be c, b, u or p")
        df.done()
        out.append(dev)
    return out


def parse(config: object, bundle: str) -> Spec:
    """Check ``config`` (the decoded ``config.json``) field by field into a ``Spec``."""
    f = Fields(config, "")
    version = f.get("ociVersion", str)
    if not version:
        raise SpecError("config.json: ociVersion is required")
    r = f.sub("root")
    root_path = r.get("path", str)
    if not root_path:
        raise SpecError("config.json: root.path is required")
    root = os.path.normpath(os.path.join(bundle, root_path))
    if not os.path.isdir(root):
        raise SpecError(f"config.json: root.path {root} is not a directory")
    readonly = r.get("readonly", bool, False)
    r.done()
    process = parse_process(f.sub("process")) if "process" in f.obj else None
    mounts = []
    for i, m in enumerate(f.get("mounts", list, [])):
        mf = Fields(m, f"mounts[{i}]")
        mounts.append(Mount(mf.absolute("destination", required=True), mf.get("type", str),
                            mf.get("source", str), mf.strings("options")))  # fmt: skip
        mf.done()
    hooks = _hooks(f.sub("hooks"))
    annotations = f.get("annotations", dict, {})
    if not all(isinstance(v, str) for v in annotations.values()):
        raise SpecError("config.json: annotations must map strings to strings")
    linux = f.sub("linux")
    namespaces = []
    for i, n in enumerate(linux.get("namespaces", list, [])):
        nf = Fields(n, f"linux.namespaces[{i}]")
        ns = Namespace(nf.get("type", str, ""), nf.absolute("path"))
        nf.done()
        if ns.type not in NAMESPACES:
            raise SpecError(f"config.json: unknown namespace type {ns.type!r}")
        if any(o.type == ns.type for o in namespaces):
            raise SpecError(f"config.json: namespace {ns.type} is listed twice")
        namespaces.append(ns)
    uid_maps, gid_maps = _mappings(linux, "uidMappings"), _mappings(linux, "gidMappings")
    if (uid_maps or gid_maps) and not any(n.type == "user" for n in namespaces):
        raise SpecError("config.json: uidMappings/gidMappings need a user namespace")
    sysctl = linux.get("sysctl", dict, {})
    propagation = linux.get("rootfsPropagation", str, "")
    if propagation not in PROPAGATIONS:
        raise SpecError(f"config.json: linux.rootfsPropagation {propagation!r} is not valid")
    _selinux_label(linux, "mountLabel")
    cgroups_path = linux.get("cgroupsPath", str)
    if cgroups_path is not None and ".." in cgroups_path.split("/"):
        raise SpecError("config.json: linux.cgroupsPath must not contain '..'")
    spec = Spec(
        bundle=bundle,
        oci_version=version,
        root=root,
        readonly=readonly,
        process=process,
        hostname=f.get("hostname", str),
        domainname=f.get("domainname", str),
        mounts=mounts,
        hooks=hooks,
        annotations=annotations,
        namespaces=namespaces,
        uid_mappings=uid_maps,
        gid_mappings=gid_maps,
        devices=_devices(linux),
        cgroups_path=cgroups_path,
        resources=linux.get("resources", dict, {}),
        sysctl={str(k): str(v) for k, v in sysctl.items()},
        masked_paths=linux.strings("maskedPaths"),
        readonly_paths=linux.strings("readonlyPaths"),
        rootfs_propagation=propagation,
        seccomp=linux.get("seccomp", dict),
        raw=config,
    )
    if (spec.hostname or spec.domainname) and not spec.namespace("uts"):
        raise SpecError("config.json: hostname and domainname need a uts namespace")
    linux.done()
    f.done()
    return spec


def load(bundle: str) -> Spec:
    """Read and check ``bundle``/config.json (``bundle`` made absolute first)."""
    bundle = os.path.abspath(bundle)
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as fp:
            data = fp.read()
    except FileNotFoundError:
        raise SpecError(f"{bundle}/config.json: no such file") from None
    except OSError as e:
        raise SpecError(f"{bundle}/config.json: {e.strerror}") from None
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"{bundle}/config.json: not valid JSON: {e}") from None
    return parse(config, bundle)


def default(rootless: bool = False) -> dict:
    """The config ``spec`` writes: runc's default (``runc spec``), running ``sh``;
    ``rootless``: as ``runc spec --rootless``, root inside is the caller outside."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],  # fmt: skip
            "cwd": "/",
            "capabilities": {s: caps for s in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pyvmm",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],  # fmt: skip
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if rootless:
        linux = config["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        del linux["resources"]
        mounts = config["mounts"]
        mounts[:] = [m for m in mounts if m["type"] not in ("mqueue", "sysfs")]
        mounts.append({"destination": "/sys", "type": "none", "source": "/sys",
                       "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})  # fmt: skip
        for m in mounts:
            if m["type"] == "devpts":
                m["options"].remove("gid=5")
    return config


# runc's defaults for ``spec`` (libcontainer/specconv/example.go), also what
# ``pyvmm container`` asks for.
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def limits(resources: dict, nodes: list | None = None) -> Limits:
    """``linux.resources`` (config-linux.md "Control groups"); a field this runtime
    does not implement is an error naming it. ``nodes``: ``linux.devices``, which
    the container may use whatever the rules say (as runc allows them)."""
    r = Fields(resources, "linux.resources")
    m, c, p = r.sub("memory"), r.sub("cpu"), r.sub("pids")
    limits = Limits(
        memory=_limit(m.get("limit", int)),
        memory_swap=_limit(m.get("swap", int)),
        memory_reservation=_limit(m.get("reservation", int)),
        memory_kernel=_limit(m.get("kernel", int)),
        memory_kernel_tcp=_limit(m.get("kernelTCP", int)),
        memory_swappiness=_limit(m.get("swappiness", int), -1),
        oom_kill_disable=m.get("disableOOMKiller", bool),
        pids=_limit(p.get("limit", int)),
        cpu_shares=_limit(c.get("shares", int)),
        cpu_quota=_limit(c.get("quota", int)),
        cpu_period=_limit(c.get("period", int)),
        cpu_rt_runtime=_limit(c.get("realtimeRuntime", int), 0),
        cpu_rt_period=_limit(c.get("realtimePeriod", int)),
        cpuset_cpus=c.get("cpus", str) or None,
        cpuset_mems=c.get("mems", str) or None,
    )
    for sub in (m, c, p):
        sub.done()
    rules = r.get("devices", list)
    if rules is not None:
        allowed = [DeviceRule(True, "c" if n.type == "u" else n.type, n.major, n.minor)
                   for n in nodes or () if n.type != "p"]  # fmt: skip
        limits.devices = [*(_device_rule(i, d) for i, d in enumerate(rules)),
                          *DEFAULT_DEVICE_RULES, *allowed]  # fmt: skip
    r.done()
    if limits.cpu_shares is not None and limits.cpu_shares < 2:
        raise SpecError("config.json: linux.resources.cpu.shares must be at least 2")
    return limits


def _limit(value: int | None, unset: int | None = None) -> int | None:
    """A ``linux.resources`` number as runc reads it: 0 (what Docker writes for every
    limit not asked for), -1 ("no limit") and absence all leave the kernel's default;
    where 0 is a value of its own (a swappiness), only ``unset`` does."""
    if value is None or value == unset or (unset is None and value <= 0):
        return None
    return value


def _positive(value: int | None) -> int | None:
    """OCI's "no limit" is -1 (or absent); the kernel's is None here."""
    return value if value is not None and value >= 0 else None


def _device_rule(i: int, rule: dict) -> DeviceRule:
    """One ``linux.resources.devices`` entry, checked."""
    f = Fields(rule, f"linux.resources.devices[{i}]")
    allow = f.get("allow", bool)
    kind = f.get("type", str, "a")
    major, minor = f.get("major", int), f.get("minor", int)
    access = f.get("access", str, "rwm")
    f.done()
    if allow is None:
        raise SpecError(f"config.json: linux.resources.devices[{i}].allow is required")
    if kind not in ("a", "c", "b") or not access or set(access) - set("rwm"):
        raise SpecError(f"config.json: linux.resources.devices[{i}] is not a valid rule")
    return DeviceRule(allow, kind, _positive(major), _positive(minor), access)
