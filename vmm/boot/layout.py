"""Where pyvmm puts things in guest-physical memory before the first instruction runs.

    0x0000_0500  boot GDT (null, 64-bit code, data)
    0x0000_0600  boot-info block (the guest finds it through RDI)
    0x0000_0800  kernel command line, NUL-terminated
    0x0000_1000  PML4, then the PDPT, then page directory i for GiB i (as needed)
    0x0007_0000  the tiny kernel's start-up page for other CPUs (guest/kernel/smp.h)
    0x0008_0000  initial stack top (grows down, below the EBDA on a PC)
    0x0009_0000  Linux: zero page or PVH start info, then memory map, then command line
    0x0010_0000  the kernel's segments start here (1 MiB, as on a PC)
    top of RAM   the ring-3 program (a static ELF), 2 MiB aligned below the top

RAM below 4 GiB stops at ``LOW_RAM_END``; the gap up to 4 GiB is for devices
(``MMIO_BASE``), and RAM beyond that continues at 4 GiB, as on a PC.
"""

BOOT_GDT = 0x500
BOOT_INFO = 0x600
CMDLINE = 0x800
CMDLINE_MAX = 0x1000 - CMDLINE - 1
PML4 = 0x1000
PDPT = 0x2000
PAGE_DIRS = 0x3000
MAX_PAGE_DIRS = 64  # 64 GiB identity-mapped at most
BOOT_STACK_TOP = 0x80000
KERNEL_MIN = 0x100000
# Linux's boot structures (docs/linux.md): the zero page or PVH start info, the memory
# map and module list, the command line. They sit in RAM below the EBDA, as in
# Firecracker: Linux copies them early, before it reuses that memory.
LINUX_BOOT_PARAMS = 0x9_0000
LINUX_BOOT_TABLES = 0x9_1000
LINUX_CMDLINE = 0x9_2000
LINUX_CMDLINE_MAX = 0x1000 - 1
EBDA_START = 0x9_FC00  # conventional memory ends here on a PC; the BIOS's data follows

LOW_RAM_END = 0xC000_0000
MMIO_BASE = 0xD000_0000
HIGH_RAM_BASE = 0x1_0000_0000
MAX_MEMORY = (MAX_PAGE_DIRS << 30) - (HIGH_RAM_BASE - LOW_RAM_END)

REAL_MODE_LOAD = 0x7C00  # where a PC BIOS puts a boot sector
REAL_MODE_TOP = 0xA0000  # conventional memory ends here
PROGRAM_ALIGN = 2 << 20


def ram_regions(size: int) -> list[tuple[int, int]]:
    """RAM below the device gap, and above 4 GiB whatever does not fit below it."""
    low = min(size, LOW_RAM_END)
    regions = [(0, low)]
    if size > low:
        regions.append((HIGH_RAM_BASE, size - low))
    return regions
