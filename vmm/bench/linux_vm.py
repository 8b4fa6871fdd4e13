"""The full-Linux-VM reference: Debian's cloud kernel and a busybox initramfs under QEMU.

This is what "a VM" usually means: a general-purpose kernel that probes its hardware,
loads drivers and starts an init, before the workload can run. Everything comes from
Debian's own packages, fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into a cache directory (nothing is installed into the host's /boot):

- the kernel of ``linux-image-cloud-amd64`` (the meta package names the versioned one);
- an initramfs (cpio, newc) holding the static busybox of ``busybox-static``, the
  workload executable, the kernel's virtio modules, and an /init that loads them, runs
  the workload on /dev/vda and powers the VM off.

QEMU uses KVM where the host's KVM is hardware virtualization. Under PVM (a software
KVM for nested guests) a stock kernel gets only a few lines far, so there QEMU emulates
the CPU with TCG, and the row says so: its times are those of an emulated machine.
"""

from __future__ import annotations

import os
import shutil
from typing import NamedTuple

from vmm.bench.measure import CACHE_DIR, apt_get, run_checked
from vmm.errors import PyvmmError
from vmm.guests.initramfs import BUSYBOX
from vmm.guests.initramfs import make as make_initramfs
from vmm.kvm.kind import kvm_kind

META_PACKAGE = "linux-image-cloud-amd64"
QEMU = "qemu-system-x86_64"
GUEST_MEMORY = "256M"
# The modules between the kernel and /dev/vda; their dependencies are read from each
# module's own .modinfo, so the load order follows the kernel version at hand.
WANTED_MODULES = ("virtio_pci", "virtio_blk")

INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in {modules}; do /bin/busybox insmod /lib/modules/$m.ko || exit 1; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 500 ]; do /bin/busybox usleep 10000; n=$((n+1)); done
/workload /dev/vda
echo "init: workload exited with status $?" >/dev/kmsg
/bin/busybox poweroff -f
"""


class LinuxVm(NamedTuple):
    kernel: str
    initramfs: str
    package: str  # the versioned kernel package, e.g. linux-image-6.1.0-28-cloud-amd64
    package_dir: str  # the whole unpacked package: what a real guest would install
    accel: str  # "kvm" or "tcg"


def ensure_tools(commands: list[list[str]]) -> None:
    """Install QEMU, busybox-static and cpio from Debian if they are missing."""
    wanted = {QEMU: "qemu-system-x86", BUSYBOX: "busybox-static", "cpio": "cpio"}
    missing = [pkg for tool, pkg in wanted.items() if not shutil.which(tool)]
    if missing:
        apt_get(["install", "-y", "-qq", "--no-install-recommends", *missing], commands)


def accelerator() -> str:
    """KVM only where it is hardware virtualization; under PVM, TCG (see above)."""
    kvm = kvm_kind()
    return "kvm" if kvm["kind"] == "hardware" and kvm["device"] else "tcg"


def _downloaded(package: str, dest: str) -> str | None:
    for name in os.listdir(dest):
        if name.startswith(package + "_") and name.endswith(".deb"):
            return os.path.join(dest, name)
    return None


def _download(package: str, dest: str, commands: list[list[str]]) -> str:
    if not _downloaded(package, dest):
        apt_get(["download", package], commands, cwd=dest)
    deb = _downloaded(package, dest)
    if deb is None:
        raise PyvmmError(f"apt-get download {package} left no {package}_*.deb in {dest}")
    return deb


def _kernel_package(cache: str, commands: list[list[str]]) -> tuple[str, str]:
    """Download the meta package, follow its dependency to the kernel's own package,
    download and unpack that; return (package name, unpacked directory)."""
    meta = _download(META_PACKAGE, cache, commands)
    depends = run_checked(["dpkg-deb", "-f", meta, "Depends"], commands)
    package = next(
        (d.split()[0] for d in depends.split(",") if d.strip().startswith("linux-image-")), None
    )
    if package is None:
        raise PyvmmError(f"{META_PACKAGE} depends on no linux-image package: {depends.strip()}")
    unpacked = os.path.join(cache, package)
    if not os.path.isdir(unpacked):
        deb = _download(package, cache, commands)
        run_checked(["dpkg-deb", "-x", deb, unpacked + ".tmp"], commands)
        os.rename(unpacked + ".tmp", unpacked)
    return package, unpacked


def _module_paths(unpacked: str) -> dict[str, str]:
    found = {}
    for root, _dirs, files in os.walk(os.path.join(unpacked, "lib", "modules")):
        for f in files:
            if f.endswith(".ko"):
                found[f[:-3].replace("-", "_")] = os.path.join(root, f)
    return found


def _depends(module: str) -> list[str]:
    with open(module, "rb") as f:
        data = f.read()
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    value = data[start + 9 : data.index(b"\0", start + 1)].decode()
    return [d.replace("-", "_") for d in value.split(",") if d]


def module_order(paths: dict[str, str], wanted: tuple[str, ...]) -> list[str]:
    """The wanted modules and their dependencies, each after what it depends on."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in paths:
            raise PyvmmError(f"the kernel package has no module {name} (built in, or renamed?)")
        for dep in _depends(paths[name]):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _initramfs(unpacked: str, workload: str, out: str, commands: list[list[str]]) -> None:
    paths = _module_paths(unpacked)
    order = module_order(paths, WANTED_MODULES)
    modules = {f"lib/modules/{name}.ko": paths[name] for name in order}
    make_initramfs(
        out,
        INIT.format(modules=" ".join(order)),
        {"workload": workload, **modules},
        dirs=("dev", "proc", "lib/modules"),
        gzip=True,
        log=commands,
    )


def prepare(workload: str, commands: list[list[str]], cache: str | None = None) -> LinuxVm:
    """Everything the row needs, made once and kept in the cache (the initramfs again
    whenever the workload executable is newer than it); each command run goes into
    ``commands``, those before a failure too."""
    cache = cache or os.path.join(CACHE_DIR, "linux-vm")
    os.makedirs(cache, exist_ok=True)
    ensure_tools(commands)
    package, unpacked = _kernel_package(cache, commands)
    kernels = [f for f in os.listdir(os.path.join(unpacked, "boot")) if f.startswith("vmlinuz")]
    if not kernels:
        raise PyvmmError(f"{package} holds no vmlinuz")
    initramfs = os.path.join(cache, f"initramfs-{package}.cpio.gz")
    if not os.path.exists(initramfs) or os.path.getmtime(initramfs) < os.path.getmtime(workload):
        _initramfs(unpacked, workload, initramfs, commands)
    kernel = os.path.join(unpacked, "boot", kernels[0])
    return LinuxVm(kernel, initramfs, package, unpacked, accelerator())


def command(vm: LinuxVm, image: str) -> list[str]:
    """Boot it on ``image`` as /dev/vda; the serial console is the process's stdout.

    ``file.locking=off`` lets several instances share one image in the scale runs, as
    the other rows do (each writes the same result block).
    """
    return [
        QEMU,
        "-accel",
        vm.accel,
        "-m",
        GUEST_MEMORY,
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        vm.kernel,
        "-initrd",
        vm.initramfs,
        "-append",
        "console=ttyS0 quiet panic=-1",
        "-drive",
        f"file={image},format=raw,if=virtio,file.locking=off",
    ]
