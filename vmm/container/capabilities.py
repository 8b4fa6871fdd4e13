"""Capabilities and no_new_privs: what root inside the container may still do.

Root's power is split into capabilities. The container keeps Docker's default set
(enough to chown, bind low ports, setuid to another user...) minus CAP_MKNOD, and
loses the rest (loading modules, mounting, rebooting, raw I/O...). Docker may keep
CAP_MKNOD because its device cgroup (v1) or eBPF device filter (v2) stops a node
such as /dev/sda from being opened; pyvmm has no device filter, so it must not let
the container create device nodes at all. Dropping them from the *bounding*
set matters most: at execve a root process's permitted set is recomputed from the
bounding set, so anything left there would come back. No capability is inheritable
or ambient, and ``no_new_privs`` makes setuid binaries unable to raise privilege.
"""

from __future__ import annotations

from vmm.container._libc import ffi, lib
from vmm.container.libc import check, prctl

DEFAULT = (
    lib.CAP_CHOWN,
    lib.CAP_DAC_OVERRIDE,
    lib.CAP_FSETID,
    lib.CAP_FOWNER,
    lib.CAP_NET_RAW,
    lib.CAP_SETGID,
    lib.CAP_SETUID,
    lib.CAP_SETFCAP,
    lib.CAP_SETPCAP,
    lib.CAP_NET_BIND_SERVICE,
    lib.CAP_SYS_CHROOT,
    lib.CAP_KILL,
    lib.CAP_AUDIT_WRITE,
)


def names(caps: tuple[int, ...] = DEFAULT) -> list[str]:
    """Capability numbers by their <linux/capability.h> names, for people to read (the
    kernel shows sets as hex masks, bit N for capability N)."""
    known = {getattr(lib, n): n for n in dir(lib) if n.startswith("CAP_")}
    return [known.get(cap, f"CAP_{cap}") for cap in sorted(caps)]


def _last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def restrict(keep: tuple[int, ...] = DEFAULT) -> None:
    """Reduce the calling process to ``keep``, with nothing inheritable, and set
    no_new_privs; call just before execve."""
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            prctl(lib.PR_CAPBSET_DROP, cap)
    check(lib.prctl(lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    header = ffi.new("cap_user_header_struct *", {"version": lib._LINUX_CAPABILITY_VERSION_3})
    data = ffi.new("cap_user_data_struct[]", lib._LINUX_CAPABILITY_U32S_3)
    for cap in keep:
        data[cap // 32].effective |= 1 << (cap % 32)
        data[cap // 32].permitted |= 1 << (cap % 32)
    check(lib.syscall(lib.SYS_capset, header, data), "capset")
    prctl(lib.PR_SET_NO_NEW_PRIVS, 1)
