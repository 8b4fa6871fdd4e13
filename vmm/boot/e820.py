"""The guest's physical memory map as a PC firmware reports it (BIOS INT 15h, E820h).

Both Linux boot protocols hand it over in this form: the bzImage zero page as
``e820_table`` and the PVH start info as ``memmap``, with the same type numbers (ACPI
spec 6.5, 15.1 "INT 15H, E820H - Query System Address Map", Table 15.1).
"""

from __future__ import annotations

from vmm.boot import layout
from vmm.memory import GuestMemory
from vmm.typedtuple import typed_tuple

E820_RAM = 1  # AddressRangeMemory: usable by the OS
E820_RESERVED = 2  # AddressRangeReserved


@typed_tuple
class E820Entry:
    addr: int
    size: int
    type: int


def memory_map(memory: GuestMemory) -> list[E820Entry]:
    """RAM below the EBDA, the reserved hole up to 1 MiB where a PC has its BIOS and
    video memory, then RAM from 1 MiB and above 4 GiB, as Firecracker reports it."""
    low = memory.regions[0]
    entries = [
        E820Entry(0, layout.EBDA_START, E820_RAM),
        E820Entry(layout.EBDA_START, layout.KERNEL_MIN - layout.EBDA_START, E820_RESERVED),
    ]
    if low.end > layout.KERNEL_MIN:
        entries.append(E820Entry(layout.KERNEL_MIN, low.end - layout.KERNEL_MIN, E820_RAM))
    entries += [E820Entry(r.gpa, r.size, E820_RAM) for r in memory.regions[1:]]
    return entries
