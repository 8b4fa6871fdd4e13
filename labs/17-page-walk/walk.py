"""Lab 17: the guest's page tables, walked by hand from the VMM.

Usage: python walk.py [--gib-pages] MEMORY CR3 ADDRESS...

MEMORY is a file holding guest-physical memory from address 0, CR3 the guest's CR3
(the physical address of its top table, the PML4, in bits 51-12), and each ADDRESS a
guest-linear (virtual) address. For each, prints the guest-physical address it
translates to, as the guest's CPU would, or that it does not translate:

    0xffff800000201234 -> 0x7fe01234
    0x7f0000000000 -> unmapped

``--gib-pages`` says that the guest's CPU has 1 GiB pages (CPUID 0x80000001, EDX bit 26,
"Page1GB"). A VMM needs this walk whenever the guest hands it a virtual address: a
debugger's breakpoint, an exit report showing the instruction at RIP, a crash dump.
KVM's answer to the same question is the KVM_TRANSLATE ioctl (``vcpu.translate``).
"""

import argparse
import sys
from pathlib import Path

from vmm.memory import GuestMemory, GuestMemoryError

# 4-level paging, Intel SDM vol. 3A, 4.5 "4-Level Paging and 5-Level Paging", tables
# 4-14 to 4-20: each table is one 4 KiB page of 512 8-byte entries.
PRESENT = 1 << 0  # P: without it the entry maps nothing, whatever its other bits say
PAGE_SIZE = 1 << 7  # PS: in a PDPTE a 1 GiB page, in a PDE a 2 MiB page; ends the walk
FRAME = ((1 << 52) - 1) & ~0xFFF  # bits 51-12: the next table's (or the page's) address
LEVELS = (39, 30, 21, 12)  # the index into PML4, PDPT, PD, PT: 9 bits from each shift
INDEX = 0x1FF  # 9 bits: 512 entries


def translate(memory: GuestMemory, cr3: int, linear: int, gib_pages: bool) -> int | None:
    """The guest-physical address of ``linear``, or None where the walk ends at an entry
    that is not present (or, for a 1 GiB page on a CPU without them, whose PS bit is
    reserved: a page fault too). Every table is read from guest memory with
    ``memory.read_u64(address)``."""
    # >>> 17: start at the PML4 (cr3's bits 51-12, FRAME); at each level (LEVELS) read the
    # ... entry at table + 8 * the address's 9 index bits; not PRESENT: None; in the PDPT
    # ... (shift 30) or the PD (shift 21) with PAGE_SIZE set, the entry names a large page:
    # ... its frame (bits 51 down to the shift: bit 12 there is PAT, not address) plus the
    # ... address's low bits; a PDPT's PS without gib_pages is a reserved bit: None;
    # ... otherwise the entry's FRAME is the next table, and after the PT the page
    table = cr3 & FRAME
    for shift in LEVELS:
        entry = memory.read_u64(table + 8 * ((linear >> shift) & INDEX))
        if not entry & PRESENT:
            return None
        if shift in (30, 21) and entry & PAGE_SIZE:
            if shift == 30 and not gib_pages:
                return None
            offset = (1 << shift) - 1
            return (entry & FRAME & ~offset) | (linear & offset)
        table = entry & FRAME
    return table | (linear & 0xFFF)
    # <<<


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="walk", description=__doc__.splitlines()[0])
    p.add_argument("--gib-pages", action="store_true", help="the CPU has 1 GiB pages")
    p.add_argument("memory", type=Path, help="guest-physical memory from address 0")
    p.add_argument("cr3", type=lambda s: int(s, 0))
    p.add_argument("addresses", nargs="+", type=lambda s: int(s, 0))
    args = p.parse_args(argv)
    data = args.memory.read_bytes()
    memory = GuestMemory.flat(-(-len(data) // 4096) * 4096)
    memory.write(0, data)
    for linear in args.addresses:
        try:
            physical = translate(memory, args.cr3, linear, args.gib_pages)
            answer = "unmapped" if physical is None else hex(physical)
        except GuestMemoryError as e:  # the walk left the tables: a wrong index or frame
            answer = f"error: {e}"
        print(f"{linear:#x} -> {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
