"""The boot-info block: what the VMM tells the tiny kernel, at the address in RDI.

The contract around it: the kernel is entered in 64-bit mode with the identity map
described below, and all RAM the VMM loaded nothing into reads as zero (the kernel
relies on it rather than clearing a program's .bss in emulated ring-0 code).

The layout is mirrored by ``guest/include/bootinfo.h``; change both together.

    offset  field
    0       u32 magic             "PYVM" (0x4d565950)
    4       u32 version           1
    8       u64 mem_size          bytes of RAM in total
    16      u64 low_mem_end       RAM is [0, low_mem_end) plus, past 4 GiB, the rest
    24      u64 cmdline_addr      NUL-terminated kernel command line
    32      u32 cmdline_len       its length without the NUL
    36      u32 nr_virtio         how many virtio-mmio devices follow
    40      u64 program_addr      a static ELF executable to run in ring 3 (0: none)
    48      u64 program_size
    56      u64 page_tables       the PML4 the VMM built (== CR3 at entry)
    64      u64 mmio_base         the start of the device gap below 4 GiB
    72      4 x {u64 base; u32 size; u32 irq}  virtio-mmio devices
    136     u32 nr_cpus           CPUs, local APIC ids 0 to nr_cpus - 1; the kernel
                                  starts all but the first itself (INIT, SIPI)
    140     u32 flags             BOOT_FLAG_INTERRUPTS: take interrupts, sleep in HLT
"""

from __future__ import annotations

import struct

from vmm.typedtuple import typed_tuple

BOOT_INFO_MAGIC = 0x4D565950
BOOT_INFO_VERSION = 2  # 2: nr_cpus, flags
BOOT_FLAG_INTERRUPTS = 1  # the kernel takes interrupts rather than polling its devices
MAX_VIRTIO = 4

_HEADER = struct.Struct("<IIQQQIIQQQQ")
_VIRTIO = struct.Struct("<QII")
_CPUS = struct.Struct("<II")


@typed_tuple
class VirtioSlot:
    base: int
    size: int
    irq: int


@typed_tuple
class BootInfo:
    mem_size: int
    low_mem_end: int
    cmdline_addr: int
    cmdline_len: int
    program_addr: int = 0
    program_size: int = 0
    page_tables: int = 0
    mmio_base: int = 0
    virtio: tuple[VirtioSlot, ...] = ()
    nr_cpus: int = 1
    flags: int = 0

    def pack(self) -> bytes:
        head = _HEADER.pack(
            BOOT_INFO_MAGIC,
            BOOT_INFO_VERSION,
            self.mem_size,
            self.low_mem_end,
            self.cmdline_addr,
            self.cmdline_len,
            len(self.virtio),
            self.program_addr,
            self.program_size,
            self.page_tables,
            self.mmio_base,
        )
        slots = [*self.virtio, *[VirtioSlot(0, 0, 0)] * (MAX_VIRTIO - len(self.virtio))]
        virtio = b"".join(_VIRTIO.pack(s.base, s.size, s.irq) for s in slots)
        return head + virtio + _CPUS.pack(self.nr_cpus, self.flags)
