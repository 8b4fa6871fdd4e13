"""What both Linux boot protocols share: the command line the VMM completes, and where
the initrd goes.

The VMM adds to the user's command line what only it knows: where the virtio-mmio
disks are (``virtio_mmio.device=``, Linux's Documentation/admin-guide/kernel-parameters
"virtio_mmio.device"; there is no PCI or ACPI to find them by), and, under PVM, the
masks for the instructions PVM cannot run in guest ring 0 (docs/linux.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from vmm.boot import layout
from vmm.boot.bootinfo import VirtioSlot
from vmm.errors import PyvmmError
from vmm.memory import GuestMemory

DEFAULT_CMDLINE = "console=ttyS0"
# Measured on this host's PVM (docs/linux.md). PVM cannot run: XRSTOR in FPU set-up
# (noxsave); CLAC in the exception entry (SMAP, X86_FEATURE_SMAP = 9*32+20 = 308); POPCNT
# (X86_FEATURE_POPCNT = 4*32+23 = 151). PVM runs byte-wise, slowly: REP MOVSB/STOSB,
# which Linux prefers for copies and page clearing with ERMS (9*32+9 = 297) or FSRM
# (18*32+4 = 580); without them it moves 8 bytes an iteration. clearcpuid= takes one
# comma-separated list.
PVM_CMDLINE = ("noxsave", "clearcpuid=308,151,297,580")
PAGE = 4096
# The initrd's alignment: a page is what Linux needs; 2 MiB keeps it in its own large
# page of the identity map.
INITRD_ALIGN = 2 << 20


class LinuxBootError(PyvmmError):
    """A Linux image or initrd that cannot be booted; the message says which and why."""


def command_line(user: str, virtio: Sequence[VirtioSlot], pvm: bool) -> str:
    words = [user] if user else []
    words += [f"virtio_mmio.device={s.size}@{s.base:#x}:{s.irq}" for s in virtio]
    if pvm:
        words += PVM_CMDLINE
    return " ".join(words)


def write_cmdline(memory: GuestMemory, cmdline: str, limit: int) -> int:
    """The NUL-terminated command line at LINUX_CMDLINE; ``limit`` counts the NUL."""
    data = cmdline.encode() + b"\0"
    limit = min(limit, layout.LINUX_CMDLINE_MAX + 1)
    if len(data) > limit:
        raise LinuxBootError(
            f"command line is {len(data) - 1} bytes; this kernel takes {limit - 1}"
        )
    memory.write(layout.LINUX_CMDLINE, data)
    return layout.LINUX_CMDLINE


def place_initrd(memory: GuestMemory, initrd: bytes, floor: int, ceiling: int) -> int:
    """Copy the initrd as high as it goes below ``ceiling`` (exclusive) in low RAM and
    above ``floor`` (the kernel's end), as boot loaders do; returns its address."""
    top = min(ceiling, memory.regions[0].end)
    addr = (top - len(initrd)) // INITRD_ALIGN * INITRD_ALIGN
    if addr < floor:
        addr = (top - len(initrd)) // PAGE * PAGE
    if addr < max(floor, layout.KERNEL_MIN):
        raise LinuxBootError(
            f"the initrd ({len(initrd) >> 10} KiB) does not fit between the kernel's end "
            f"({floor:#x}) and {top:#x}: give the guest more --memory"
        )
    memory.write(addr, initrd)
    return addr
