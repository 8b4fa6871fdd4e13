"""The Linux guest built for pyvmm: where it is cached, and building it the first time.

The kernel is Debian's ``linux-source-6.1`` under ``make tinyconfig`` plus the fragment
and the patches in ``guest/linux/`` (see docs/linux.md). A build takes minutes, so it
goes into a cache outside the repository, named by a hash of everything it is made
from: a fresh clone (CI) on the same machine finds it there. Two kernels come out of
one source tree: the patched one, and the same configuration without the patches
(``vmlinux.unpatched``), which hardware KVM boots and PVM cannot. The SMP variant
(``pyvmm-smp.config`` on top, for ``--cpus``) is a build of its own, patched only, made
the first time it is asked for.

The initramfs is small and quick to make: a plain cpio (a compressed one costs tens of
seconds of emulated unpacking under PVM) with busybox, the workload, the exit helper
and an /init, written into guest/build/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass

from vmm.errors import PyvmmError
from vmm.guests import initramfs
from vmm.guests import tiny as guest

LINUX_DIR = os.path.join(guest.GUEST_DIR, "linux")
CONFIG_FRAGMENT = os.path.join(LINUX_DIR, "pyvmm.config")
SMP_FRAGMENT = os.path.join(LINUX_DIR, "pyvmm-smp.config")
PATCH_DIR = os.path.join(LINUX_DIR, "patches")
SOURCE_TARBALL = "/usr/src/linux-source-6.1.tar.xz"  # Debian's linux-source-6.1
CACHE_ROOT = os.environ.get("PYVMM_LINUX_CACHE", "/var/cache/pyvmm")
# Bump when the recipe below changes in a way the hashed inputs do not show.
RECIPE = b"pyvmm linux recipe 1"
JOBS = "-j2"

INITRAMFS = os.path.join(guest.GUEST_DIR, "build", "linux-initramfs.cpio")
EXIT_HELPER = os.path.join(guest.GUEST_DIR, "build", "pyvmm-exit")
EXIT_HELPER_SOURCE = os.path.join(LINUX_DIR, "pyvmm-exit.c")
# With "pyvmm.wait" on the command line, /init waits for a line on the console before it
# runs the workload: a snapshot taken then is a VM ready to serve, restored to run it
# (docs/state.md). The exit helper says WAIT_LINE and waits when it runs the workload
# (guest/linux/pyvmm-exit.c), the shell when it does not; either way the line comes from
# here.
WAIT_PARAM = "pyvmm.wait"
WAIT_LINE = "init: waiting for a line on the console"

# With "pyvmm.copies=N", /init starts N copies of the workload at once and waits for all:
# N vCPUs' worth of work in one VM (`pyvmm bench parallel`).
COPIES_PARAM = "pyvmm.copies"

NET_LINE = "init: serving on eth0"
# The guest's network services, busybox's own nc (one static program, the same in every
# VM): echo (port 7: each connection's bytes come back, for request/response latency),
# discard (9: read and thrown away) and a source (19: CHARGEN_BYTES of zeros, then
# close), the ports of RFC 862, 863 and 864. Bulk transfers in both directions.
ECHO_PORT, DISCARD_PORT, CHARGEN_PORT = 7, 9, 19
CHARGEN_BYTES = 4 << 20
_CHARGEN_DD = f"bs=64k count={CHARGEN_BYTES >> 16}"
NET_SERVICES = f"""/bin/busybox nc -ll -p {ECHO_PORT} -e /bin/busybox cat &
/bin/busybox nc -ll -p {DISCARD_PORT} -e /bin/busybox dd of=/dev/null bs=64k 2>/dev/null &
/bin/busybox nc -ll -p {CHARGEN_PORT} -e /bin/busybox dd if=/dev/zero {_CHARGEN_DD} 2>/dev/null &
echo "{NET_LINE}"
"""

# /init: mount what busybox and the workload need, say how many CPUs Linux brought up
# (`pyvmm boot --cpus N`); with a network card, start the services above; run the
# workload on /dev/vda when there is one (N copies at once with pyvmm.copies=N; the
# status is the last failing copy's), else serve the network until the VM is stopped,
# else report and stop; carry the exit status out through pyvmm's exit port with the
# static helper. With a disk, the shell execs the helper, which waits for the console
# line (pyvmm.wait) and starts the copies itself: the shell's fork would copy pages that
# the helper's vfork does not (guest/linux/pyvmm-exit.c says why that matters under PVM).
INIT = f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
echo "init: nproc=$(/bin/busybox nproc)"
if [ -e /sys/class/net/eth0 ]; then
{NET_SERVICES}fi
read -r cmdline < /proc/cmdline
wait=
case " $cmdline " in *" {WAIT_PARAM} "*) wait=yes ;; esac
copies=1
for word in $cmdline; do
    case "$word" in {COPIES_PARAM}=[1-9] | {COPIES_PARAM}=[1-9][0-9])
        copies=${{word#{COPIES_PARAM}=}} ;;
    esac
done
if [ -b /dev/vda ]; then
    set -- $copies /workload /dev/vda
    [ -n "$wait" ] && set -- --wait "{WAIT_LINE}" "$@"
    exec /bin/pyvmm-exit run "$@"
fi
if [ -n "$wait" ]; then
    echo "{WAIT_LINE}"
    read -r _
fi
if [ -e /sys/class/net/eth0 ]; then
    wait
    status=0
else
    echo "init: no /dev/vda"
    status=1
fi
/bin/pyvmm-exit $status
"""


@dataclass(frozen=True)
class LinuxBuild:
    """One cached build: a directory holding the kernels and their System.map."""

    dir: str
    smp: bool = False  # the SMP variant: no unpatched kernel

    @property
    def vmlinux(self) -> str:
        return os.path.join(self.dir, "vmlinux")

    @property
    def vmlinux_unpatched(self) -> str:
        return os.path.join(self.dir, "vmlinux.unpatched")

    @property
    def bzimage(self) -> str:
        return os.path.join(self.dir, "bzImage")

    @property
    def system_map(self) -> str:
        return os.path.join(self.dir, "System.map")

    @property
    def complete(self) -> bool:
        outputs = (self.vmlinux, self.bzimage, self.system_map)
        unpatched = () if self.smp else (self.vmlinux_unpatched,)
        return all(os.path.isfile(p) for p in (*outputs, *unpatched))

    @property
    def fragments(self) -> tuple[str, ...]:
        return (CONFIG_FRAGMENT, SMP_FRAGMENT) if self.smp else (CONFIG_FRAGMENT,)


def patches() -> list[str]:
    return sorted(os.path.join(PATCH_DIR, n) for n in os.listdir(PATCH_DIR) if n.endswith(".patch"))


def build_key(fragments: tuple[str, ...] = (CONFIG_FRAGMENT,)) -> str:
    """A hash of what the kernel is made from: the fragments, the patches, the source
    tarball (by name and size) and the recipe."""
    h = hashlib.sha256(RECIPE)
    for path in (*fragments, *patches()):
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
    try:
        size = os.stat(SOURCE_TARBALL).st_size
    except OSError:
        size = -1
    h.update(f"{SOURCE_TARBALL}:{size}".encode())
    return h.hexdigest()[:16]


def cached(smp: bool = False) -> LinuxBuild:
    name = "linux-smp" if smp else "linux"
    key = build_key(LinuxBuild("", smp).fragments)
    return LinuxBuild(os.path.join(CACHE_ROOT, f"{name}-{key}"), smp)


def _fragment_settings(fragments: tuple[str, ...]) -> dict[str, str]:
    """CONFIG_X -> value ("n" for "# CONFIG_X is not set") from the fragments, the
    later winning."""
    wanted = {}
    for path in fragments:
        wanted.update(_settings(path))
    return wanted


def _settings(path: str) -> dict[str, str]:
    """CONFIG_X -> value of a fragment or a .config ("n" for "is not set")."""
    wanted = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                name, value = line.split("=", 1)
                wanted[name] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                wanted[line[2:].split()[0]] = "n"
    return wanted


def _run(argv: list[str], cwd: str, log: str) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise PyvmmError(f"building Linux: {' '.join(argv[:3])} failed (see {log})")


def build_kernel(say=print, smp: bool = False) -> LinuxBuild:
    """Build the kernels into the cache unless they are there; returns the build.

    One build at a time per cache entry (setup.sh and a test session may both ask): the
    others wait on a lock and then find it built."""
    build = cached(smp)
    if build.complete:
        return build
    if not os.path.isfile(SOURCE_TARBALL):
        raise PyvmmError(
            f"{SOURCE_TARBALL} is missing: scripts/setup.sh --all installs it (linux-source-6.1)"
        )
    os.makedirs(CACHE_ROOT, exist_ok=True)
    with open(build.dir + ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"build_linux: waiting for another build of {build.dir} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not build.complete:
            say(
                f"build_linux: Linux for pyvmm is not built on this machine yet; building it"
                f" (some minutes on two CPUs, once; log: {build.dir}.tmp/build.log)"
            )
            try:
                _build(build, say)
            except BaseException:
                # The source tree is a gigabyte; the log beside it says what went wrong.
                shutil.rmtree(os.path.join(build.dir + ".tmp", "src"), ignore_errors=True)
                raise
    return build


def _build(build: LinuxBuild, say) -> None:
    work = build.dir + ".tmp"
    shutil.rmtree(work, ignore_errors=True)
    src = os.path.join(work, "src")
    os.makedirs(src)
    log = os.path.join(work, "build.log")
    make = ["make", "ARCH=x86_64", JOBS]
    say(f"build_linux: unpacking {SOURCE_TARBALL} into {src}")
    _run(["tar", "xf", SOURCE_TARBALL, "-C", src, "--strip-components=1"], work, log)
    names = " + ".join(os.path.relpath(f, guest.GUEST_DIR) for f in build.fragments)
    say(f"build_linux: tinyconfig + {names}")
    _run([*make, "tinyconfig"], src, log)
    _run(["scripts/kconfig/merge_config.sh", "-m", ".config", *build.fragments], src, log)
    _run([*make, "olddefconfig"], src, log)
    have = _settings(os.path.join(src, ".config"))  # (Kconfig writes the fragments' form)
    lost = [k for k, v in _fragment_settings(build.fragments).items() if have.get(k, "n") != v]
    if lost:
        raise PyvmmError(f"building Linux: Kconfig refused {', '.join(lost)} (see {log})")
    if not build.smp:
        say(f"build_linux: make {JOBS} vmlinux bzImage, without the patches")
        _run([*make, "vmlinux", "bzImage"], src, log)
        shutil.copyfile(os.path.join(src, "vmlinux"), os.path.join(work, "vmlinux.unpatched"))
    for patch in patches():
        say(f"build_linux: applying {os.path.basename(patch)}")
        _run(["patch", "-p1", "--forward", "-i", patch], src, log)
    say(f"build_linux: make {JOBS} vmlinux bzImage, patched")
    _run([*make, "vmlinux", "bzImage"], src, log)
    for name, out in (
        ("vmlinux", "vmlinux"),
        ("arch/x86/boot/bzImage", "bzImage"),
        ("System.map", "System.map"),
        (".config", "config"),
    ):
        shutil.copyfile(os.path.join(src, name), os.path.join(work, out))
    shutil.rmtree(src)
    shutil.rmtree(build.dir, ignore_errors=True)
    os.rename(work, build.dir)
    say(f"build_linux: done: {build.dir}")


def _exit_helper() -> None:
    """The static program /init ends with: it runs the workload's copies, then hands
    their status to the exit port (ioperm, then an OUT)."""
    if os.path.exists(EXIT_HELPER) and os.path.getmtime(EXIT_HELPER) >= os.path.getmtime(
        EXIT_HELPER_SOURCE
    ):
        return
    os.makedirs(os.path.dirname(EXIT_HELPER), exist_ok=True)
    argv = ["gcc", "-Os", "-static", "-nostdlib", "-fno-pie", "-no-pie", "-ffreestanding",
            "-fno-stack-protector", "-fcf-protection=none", "-Wl,--build-id=none",
            "-o", EXIT_HELPER, EXIT_HELPER_SOURCE]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PyvmmError(f"building {EXIT_HELPER_SOURCE} failed: {proc.stderr.strip()[:200]}")


def build_initramfs() -> str:
    """The initramfs, made again whenever one of its parts is newer than it."""
    guest.ensure_built(guest.WORKLOAD)
    os.makedirs(os.path.dirname(INITRAMFS), exist_ok=True)
    with open(INITRAMFS + ".lock", "w") as lock:
        # One maker at a time: two test workers (or two commands) making it at once
        # share its scratch tree and the helper gcc writes.
        fcntl.flock(lock, fcntl.LOCK_EX)
        _exit_helper()
        parts = (guest.WORKLOAD, EXIT_HELPER, initramfs.BUSYBOX, __file__, initramfs.__file__)
        if os.path.exists(INITRAMFS) and all(
            os.path.getmtime(INITRAMFS) >= os.path.getmtime(p) for p in parts
        ):
            return INITRAMFS
        initramfs.make(
            INITRAMFS,
            INIT,
            {"bin/pyvmm-exit": EXIT_HELPER, "workload": guest.WORKLOAD},
            dirs=("dev", "proc", "sys"),
        )
    return INITRAMFS
