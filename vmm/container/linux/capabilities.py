"""Capabilities and no_new_privs: what root inside the container may still do.

Root's power is split into capabilities, and a process holds five sets of them (the
OCI runtime spec's ``process.capabilities``, capabilities(7)):

- *bounding*: the most it can ever have again. At execve a root process's permitted
  set is recomputed from it, so a capability dropped anywhere else but left here
  would come back; dropping from it is for good.
- *permitted* and *effective*: what it may enable, and what the kernel checks now.
- *inheritable* and *ambient*: what passes across an execve of a program that is not
  itself privileged (pyvmm, like Docker since 23.0, leaves both empty).

A container gets Docker's default set (enough to chown, bind low ports, setuid to
another user...) in bounding, permitted and effective, with ``--cap-add`` and
``--cap-drop`` applied as Docker applies them, and loses the rest (loading modules,
mounting, rebooting, raw I/O...). One difference: the default leaves out CAP_MKNOD,
which Docker keeps because its device cgroup stops a node such as /dev/sda from being
opened; pyvmm's device rules are enforced on cgroup v1 only (see ``cgroups.py``), so
by default the container cannot create device nodes at all. ``no_new_privs`` makes
setuid binaries unable to raise privilege.
"""

from __future__ import annotations

from collections.abc import Iterable

from vmm.container.linux._libc import ffi, lib
from vmm.container.linux.libc import check, prctl
from vmm.errors import PyvmmError

# Every capability the system headers name, number by name ("CAP_SYS_ADMIN": 21).
NUMBERS: dict[str, int] = {n: getattr(lib, n) for n in dir(lib) if n.startswith("CAP_")}
NAMES: dict[int, str] = {v: k for k, v in NUMBERS.items()}

# Docker's default set (moby daemon/pkg/oci/caps/defaults.go) less CAP_MKNOD, as above.
DEFAULT = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")  # OCI's five


class CapabilityError(PyvmmError):
    """A capability name that this kernel does not know."""


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def supported() -> list[str]:
    """Every capability this kernel has and this process may pass on (its bounding
    set: pyvmm run inside a restricted container cannot grant more than it has)."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return [NAMES[n] for n in range(_last_cap() + 1) if n in NAMES and bounding >> n & 1]


def normalize(names: Iterable[str]) -> list[str]:
    """Docker's spelling rules: any case, CAP_ optional, and ALL; each must be a
    capability that ``supported`` lists."""
    known = set(supported())
    result = []
    for name in names:
        upper = name.upper()
        if upper != "ALL":
            upper = upper if upper.startswith("CAP_") else "CAP_" + upper
            if upper not in NUMBERS:
                raise CapabilityError(f"unknown capability {name!r}")
            if upper not in known:
                raise CapabilityError(f"capability {upper} is not available here")
        result.append(upper)
    return result


def tweak(base: Iterable[str], add: Iterable[str] = (), drop: Iterable[str] = (),
          privileged: bool = False) -> list[str]:  # fmt: skip
    """The container's capabilities, as Docker computes them from ``--cap-add`` and
    ``--cap-drop``: privileged gets every one; ``--cap-add ALL`` all but the dropped;
    ``--cap-drop ALL`` only the added; else ``base`` less the dropped plus the added."""
    if privileged:
        return supported()
    add, drop = normalize(add), normalize(drop)
    if "ALL" in add:
        caps = [c for c in supported() if c not in drop]
    elif "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    else:
        caps = [c for c in base if c not in drop] + add
    return sorted(set(caps), key=NUMBERS.__getitem__)


def oci_sets(caps: Iterable[str]) -> dict[str, list[str]]:
    """The OCI ``process.capabilities`` object Docker writes for ``caps``: bounding,
    permitted and effective; nothing inheritable or ambient."""
    caps = list(caps)
    return {s: list(caps) if s in ("bounding", "effective", "permitted") else [] for s in SETS}


def _numbers(names: Iterable[str]) -> set[int]:
    """Numbers of ``names``; a name this kernel lacks is skipped, as runc does."""
    last = _last_cap()
    unknown = [n for n in names if n not in NUMBERS]
    if unknown:
        raise CapabilityError(f"unknown capability {unknown[0]!r}")
    return {NUMBERS[n] for n in names if NUMBERS[n] <= last}


def apply(sets: dict[str, list[str]]) -> None:
    """Give the calling process exactly the OCI capability ``sets`` (a set missing
    from the dict is empty); call as root, before no_new_privs and execve.

    Bounding first (dropping needs CAP_SETPCAP, which capset may take away), then
    capset for permitted, effective and inheritable, then ambient, which the kernel
    allows only for capabilities both permitted and inheritable: the others are left
    out, as runc and crun leave them (``runc spec``'s own config, and buildah's, ask
    for ambient capabilities with no inheritable set).
    """
    want = {s: _numbers(sets.get(s) or ()) for s in SETS}
    for cap in range(_last_cap() + 1):
        if cap not in want["bounding"]:
            prctl(lib.PR_CAPBSET_DROP, cap)
    header = ffi.new("cap_user_header_struct *", {"version": lib._LINUX_CAPABILITY_VERSION_3})
    data = ffi.new("cap_user_data_struct[]", lib._LINUX_CAPABILITY_U32S_3)
    for field in ("effective", "permitted", "inheritable"):
        for cap in want[field]:
            setattr(data[cap // 32], field, getattr(data[cap // 32], field) | 1 << (cap % 32))
    check(lib.syscall(lib.SYS_capset, header, data), "capset")
    check(lib.prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    for cap in want["ambient"] & want["permitted"] & want["inheritable"]:
        check(lib.prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_RAISE, cap, 0, 0), "ambient")


def set_no_new_privs() -> None:
    """From now on no execve can grant privilege (setuid bits, file capabilities)."""
    prctl(lib.PR_SET_NO_NEW_PRIVS, 1)


def decode(mask: int) -> list[str]:
    """The names of the capabilities in a mask such as /proc/PID/status's CapEff."""
    return [NAMES.get(n, f"CAP_{n}") for n in range(mask.bit_length()) if mask >> n & 1]


def raise_effective() -> None:
    """Effective = permitted: after a setuid with PR_SET_KEEPCAPS, which keeps the
    permitted set but clears the effective one, before ``apply`` drops the rest."""
    header = ffi.new("cap_user_header_struct *", {"version": lib._LINUX_CAPABILITY_VERSION_3})
    data = ffi.new("cap_user_data_struct[]", lib._LINUX_CAPABILITY_U32S_3)
    check(lib.syscall(lib.SYS_capget, header, data), "capget")
    for d in data:
        d.effective = d.permitted
    check(lib.syscall(lib.SYS_capset, header, data), "capset")
