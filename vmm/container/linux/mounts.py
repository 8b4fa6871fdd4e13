"""Mounts: the container's root filesystem and everything mounted into it.

All of this runs in the container's own mount namespace, made a *slave* of the host's
first, so no mount made here appears on the host and every one of them disappears
with the namespace when the container's last process exits: nothing to clean up.

The root is an overlayfs: the image layers as read-only ``lowerdir``s (topmost
first), the container's writable ``upperdir``, and a ``workdir`` overlayfs needs for
atomic copy-up. Writing to a lower file copies it up into ``upperdir`` first; the
lower layer is never touched.

Then a fresh /proc (this PID namespace's processes only), a small /dev on tmpfs with
just the harmless devices, /sys read-only, volumes and bind mounts, each on its
destination resolved inside the rootfs (``inroot.py``, ``mount_into``), never joined
to it as a string. pivot_root makes the overlay the root and the old root is detached:
unlike chroot, the host's tree is then unreachable, not merely out of sight. Last, the
sensitive /proc and /sys paths are masked or made read-only (the list runc uses).
"""

from __future__ import annotations

import os
import posixpath
import stat

from vmm.container.linux import fdtree, inroot
from vmm.container.linux._libc import ffi, lib
from vmm.container.linux.libc import check, mount, umount2
from vmm.errors import PyvmmError

NOSUID_NODEV_NOEXEC = lib.MS_NOSUID | lib.MS_NODEV | lib.MS_NOEXEC

DEVICES = {  # name: (major, minor), all mode 0666 as in the OCI runtime spec
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
DEV_LINKS = {
    "ptmx": "pts/ptmx",
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
MS_NOSYMFOLLOW = 256  # linux/mount.h (Linux 5.10): symlinks on the mount are not followed

# runtime-spec config.md "Mounts" options: the flag each sets (or, for the "no"
# forms' opposites, clears), as mount(8) and runc read them; anything else is data
# for the filesystem (mode=755, size=64k...).
FLAGS = {
    "ro": (False, lib.MS_RDONLY), "rw": (True, lib.MS_RDONLY),
    "nosuid": (False, lib.MS_NOSUID), "suid": (True, lib.MS_NOSUID),
    "nodev": (False, lib.MS_NODEV), "dev": (True, lib.MS_NODEV),
    "noexec": (False, lib.MS_NOEXEC), "exec": (True, lib.MS_NOEXEC),
    "sync": (False, lib.MS_SYNCHRONOUS), "async": (True, lib.MS_SYNCHRONOUS),
    "dirsync": (False, lib.MS_DIRSYNC), "remount": (False, lib.MS_REMOUNT),
    "mand": (False, lib.MS_MANDLOCK), "nomand": (True, lib.MS_MANDLOCK),
    "noatime": (False, lib.MS_NOATIME), "atime": (True, lib.MS_NOATIME),
    "nodiratime": (False, lib.MS_NODIRATIME), "diratime": (True, lib.MS_NODIRATIME),
    "relatime": (False, lib.MS_RELATIME), "norelatime": (True, lib.MS_RELATIME),
    "strictatime": (False, lib.MS_STRICTATIME), "nostrictatime": (True, lib.MS_STRICTATIME),
    "lazytime": (False, lib.MS_LAZYTIME), "nolazytime": (True, lib.MS_LAZYTIME),
    "nosymfollow": (False, MS_NOSYMFOLLOW), "symfollow": (True, MS_NOSYMFOLLOW),
    "silent": (False, lib.MS_SILENT), "loud": (True, lib.MS_SILENT),
    "bind": (False, lib.MS_BIND), "rbind": (False, lib.MS_BIND | lib.MS_REC),
    "defaults": (False, 0),
}  # fmt: skip
PROPAGATION = {
    "private": lib.MS_PRIVATE, "rprivate": lib.MS_PRIVATE | lib.MS_REC,
    "shared": lib.MS_SHARED, "rshared": lib.MS_SHARED | lib.MS_REC,
    "slave": lib.MS_SLAVE, "rslave": lib.MS_SLAVE | lib.MS_REC,
    "unbindable": lib.MS_UNBINDABLE, "runbindable": lib.MS_UNBINDABLE | lib.MS_REC,
}  # fmt: skip

# runc's extension to the options (libcontainer/specconv, "tmpcopyup"): a tmpfs starts
# with a copy of what the image has at its destination. Podman asks for it on every
# --tmpfs and on --read-only's /tmp, /var/tmp and /run; it is no data for mount(2).
TMPCOPYUP = "tmpcopyup"
EXTENSIONS = (TMPCOPYUP,)


# Under /proc only these may be mounted over (runc's checkProcMount): the files lxcfs
# emulates. Anything else there, and /proc itself but for a proc mount, is refused.
PROC_MOUNTABLE = (
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
)  # fmt: skip


def refused(destination: str, fs_type: str | None, source: str | None) -> str | None:
    """Why mounting ``source`` (of ``fs_type``) on ``destination`` is refused, or None.

    /proc and /sys are the kernel's: only a proc (sysfs) mount, or a bind of the host's
    own, may go on them, and under /proc only the files lxcfs emulates (runc's
    checkProcMount). A directory of the user's there would hide the very paths the
    masked and read-only lists protect.
    """
    path = posixpath.normpath("/" + destination.lstrip("/"))
    for top, kind in (("/proc", "proc"), ("/sys", "sysfs")):
        host_own = source is not None and os.path.realpath(source) == top
        if path == top and fs_type != kind and not host_own:
            return f"only a {kind} mount may go on {top}"
    if path.startswith("/proc/") and path not in PROC_MOUNTABLE:
        return "nothing may be mounted under /proc"
    return None


def parse_options(options: list[str]) -> tuple[int, list[int], str]:
    """OCI mount ``options`` to mount(2) flags, propagation changes and data."""
    flags, propagation, data = 0, [], []
    for option in options:
        if option in FLAGS:
            clear, flag = FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        elif option not in EXTENSIONS:
            data.append(option)
    return flags, propagation, ",".join(data)


def detach_from_host() -> None:
    """Stop mounts made from now on from propagating to the host (``--make-rslave /``)."""
    mount(None, "/", None, lib.MS_REC | lib.MS_SLAVE)


def mount_overlay(target: str, lowers: list[str], upper: str, work: str) -> None:
    """Mount the union of ``lowers`` (topmost first) with ``upper`` on ``target``."""
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}"
    if len(options) >= 4096:
        raise PyvmmError(f"too many image layers for one overlay mount ({len(lowers)})")
    mount("overlay", target, "overlay", 0, options)


def mount_into(rootfs: str, destination: str, source: str | None, fs_type: str | None,
               flags: int = 0, data: str | None = None, file: bool = False,
               copy_up: bool = False) -> None:  # fmt: skip
    """mount(2) on ``destination`` resolved inside ``rootfs`` (``inroot.py``), made if
    missing (a directory, or with ``file`` an empty file for a file's bind mount);
    ``copy_up`` (``tmpcopyup``): what was there is copied into the new file system."""
    with inroot.target(rootfs, destination, file) as target:
        if not copy_up:
            mount(source, target, fs_type, flags, data, where=destination)
            return
        image = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # before it is hidden
        try:
            mount(source, target, fs_type, flags & ~lib.MS_RDONLY, data, where=destination)
            with inroot.target(rootfs, destination, create=False) as mounted:  # the new one
                fresh = os.open(mounted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    fdtree.copy(image, fresh)
                finally:
                    os.close(fresh)
                if flags & lib.MS_RDONLY:  # read-only once filled, as runc does
                    mount(None, mounted, None, lib.MS_REMOUNT | flags, data, where=destination)
        finally:
            os.close(image)


def remount_into(rootfs: str, destination: str, flags: int) -> None:
    """Change the bind mount on ``destination`` (inside ``rootfs``) to ``flags``,
    keeping the nosuid/nodev/noexec it has: a remount replaces them all."""
    with inroot.target(rootfs, destination, create=False) as target:
        # (statvfs's ST_* flag values are the same bits as the MS_* mount flags.)
        keep = os.statvfs(target).f_flag & NOSUID_NODEV_NOEXEC
        mount(None, target, None, lib.MS_BIND | lib.MS_REMOUNT | flags | keep, where=destination)


def propagate_into(rootfs: str, destination: str, propagations: list[int]) -> None:
    """Set the propagation of the mount on ``destination`` inside ``rootfs``."""
    if propagations:
        with inroot.target(rootfs, destination, create=False) as target:
            for p in propagations:
                mount(None, target, None, p, where=destination)


def populate_dev(dev: str, bind_from_host: bool = False) -> None:
    """The devices and links every container gets in ``dev``, those still missing.

    In a user namespace mknod is not allowed; the host's nodes are bind-mounted
    instead, as runc does.
    """
    old = os.umask(0)
    try:
        for name, (major, minor) in DEVICES.items():
            node = f"{dev}/{name}"
            if os.path.lexists(node):
                continue
            if bind_from_host:
                os.close(os.open(node, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o666))
                mount(f"/dev/{name}", node, None, lib.MS_BIND)
            else:
                os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    finally:
        os.umask(old)
    for name, target in DEV_LINKS.items():
        if not os.path.lexists(f"{dev}/{name}"):
            os.symlink(target, f"{dev}/{name}")


def bind(source: str, target: str, read_only: bool) -> None:
    """Bind-mount ``source`` on ``target``; read-only needs a second, remount step."""
    mount(source, target, None, lib.MS_BIND | lib.MS_REC)
    if read_only:
        # A remount replaces the flags; keep the nosuid/nodev/noexec the source had.
        # (statvfs's ST_* flag values are the same bits as the MS_* mount flags.)
        keep = os.statvfs(target).f_flag & NOSUID_NODEV_NOEXEC
        mount(None, target, None, lib.MS_BIND | lib.MS_REMOUNT | lib.MS_RDONLY | keep)


def mask(masked: list[str] | tuple[str, ...], read_only: list[str] | tuple[str, ...]) -> None:
    """Hide ``masked`` paths (an empty read-only tmpfs on a directory, /dev/null on a
    file) and make ``read_only`` ones read-only; missing paths are skipped, a symlink
    is never followed. Called after pivot_root: the paths cannot leave the root."""
    for path in masked:
        if os.path.isdir(path) and not os.path.islink(path):
            mount("tmpfs", path, "tmpfs", lib.MS_RDONLY, None)
        elif os.path.exists(path) and not os.path.islink(path):
            mount("/dev/null", path, None, lib.MS_BIND)
    for path in read_only:
        if os.path.exists(path) and not os.path.islink(path):
            bind(path, path, read_only=True)


def pivot(rootfs: str) -> None:
    """Make ``rootfs`` (a mount point) the root and detach the old one."""
    os.chdir(rootfs)
    # pivot_root(".", "."): the old root ends up stacked under the new one at "/",
    # from where it is detached; no directory for the old root is needed.
    dot = ffi.new("char[]", b".")
    check(lib.syscall(lib.SYS_pivot_root, dot, dot), "pivot_root")
    umount2(".", lib.MNT_DETACH)
    os.chdir("/")
