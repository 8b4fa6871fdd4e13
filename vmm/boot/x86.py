"""x86 CPU state at the first instruction: real mode, or 64-bit long mode with paging.

A 64-bit kernel cannot be entered with paging off, so for ELF kernels the VMM does what
a boot loader would: it writes a GDT and identity-mapping page tables into guest memory
and sets the control registers (Intel SDM vol. 3, 9.8.5 "Initializing IA-32e Mode").
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from vmm.boot import layout
from vmm.memory import GuestMemory

# Control register and EFER bits (Intel SDM vol. 3, 2.5 and 2.2.1).
X86_CR0_PE = 1 << 0  # protected mode
X86_CR0_MP = 1 << 1  # WAIT/FWAIT honour TS
X86_CR0_ET = 1 << 4
X86_CR0_NE = 1 << 5  # native x87 error reporting
X86_CR0_WP = 1 << 16  # ring 0 respects read-only pages
X86_CR0_PG = 1 << 31
X86_CR4_PAE = 1 << 5
X86_CR4_OSFXSR = 1 << 9  # SSE enabled (the ring-3 program may use it)
X86_CR4_OSXMMEXCPT = 1 << 10
EFER_LME = 1 << 8
EFER_LMA = 1 << 10

# Page-table entry bits (SDM vol. 3, 4.5).
PTE_PRESENT = 1 << 0
PTE_WRITE = 1 << 1
PTE_USER = 1 << 2
PTE_ACCESSED = 1 << 5
PTE_DIRTY = 1 << 6
PTE_PAGE_SIZE = 1 << 7  # in a page directory: a 2 MiB page

# The boot GDT: null, then flat 64-bit code at 0x08 and flat data at 0x10 (SDM 3.4.5).
GDT_CODE64 = 0x00AF9A000000FFFF
GDT_DATA = 0x00CF92000000FFFF
SELECTOR_CODE = 0x08
SELECTOR_DATA = 0x10
RFLAGS_RESERVED = 1 << 1  # bit 1 always reads as 1


class CpuStart(NamedTuple):
    """Where and how the first vCPU starts."""

    long_mode: bool
    rip: int
    rsp: int
    rdi: int = 0


def write_page_tables(memory: GuestMemory, ranges: list[tuple[int, int]]) -> int:
    """Identity-map each [start, end) with 2 MiB pages; returns the PML4 address (CR3).

    Page directory i (at ``PAGE_DIRS + i * 4096``) covers GiB i; only those a range
    touches are written, so a small guest's tables fill a page or two. Upper levels carry
    the user bit so that the kernel decides per 2 MiB page, in the page directory, what
    ring 3 may touch; every page starts supervisor-only. Entries are written with their
    accessed and dirty bits already set, sparing the guest's CPU (emulated under PVM)
    from setting them.
    """
    upper = PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_ACCESSED
    leaf = PTE_PRESENT | PTE_WRITE | PTE_PAGE_SIZE | PTE_ACCESSED | PTE_DIRTY
    memory.write_u64(layout.PML4, layout.PDPT | upper)
    for start, end in ranges:
        first, last = start >> 21, (end - 1) >> 21  # 2 MiB page numbers
        if last >> 9 >= layout.MAX_PAGE_DIRS:
            raise ValueError(f"cannot identity-map {end:#x}")
        for gib in range(first >> 9, (last >> 9) + 1):
            directory = layout.PAGE_DIRS + gib * 0x1000
            memory.write_u64(layout.PDPT + gib * 8, directory | upper)
            lo, hi = max(first, gib << 9), min(last, (gib << 9) + 511)
            entries = struct.pack(
                f"<{hi - lo + 1}Q", *((p << 21) | leaf for p in range(lo, hi + 1))
            )
            memory.write(directory + (lo & 511) * 8, entries)
    return layout.PML4


def write_boot_gdt(memory: GuestMemory) -> None:
    memory.write(layout.BOOT_GDT, struct.pack("<3Q", 0, GDT_CODE64, GDT_DATA))


def _segment(seg, selector: int, type_: int, long_code: bool) -> None:
    seg.base = 0
    seg.limit = 0xFFFFFFFF
    seg.selector = selector
    seg.type = type_
    seg.present = 1
    seg.dpl = 0
    seg.s = 1
    seg.l = 1 if long_code else 0
    seg.db = 0 if long_code else 1
    seg.g = 1


def enter_long_mode(vcpu, pml4: int) -> None:
    """Set the special registers of a vCPU already in 64-bit mode, paging on."""
    sregs = vcpu.get_sregs()
    _segment(sregs.cs, SELECTOR_CODE, 0xB, long_code=True)  # execute/read, accessed
    for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        _segment(seg, SELECTOR_DATA, 0x3, long_code=False)  # read/write, accessed
    sregs.gdt.base = layout.BOOT_GDT
    sregs.gdt.limit = 3 * 8 - 1
    sregs.cr3 = pml4
    sregs.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT
    sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG
    sregs.efer = EFER_LME | EFER_LMA
    vcpu.set_sregs(sregs)


def enter_real_mode(vcpu) -> None:
    """Flat real mode with every segment at 0, so CS:IP = 0:load address."""
    sregs = vcpu.get_sregs()
    for seg in (sregs.cs, sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        seg.base = 0
        seg.selector = 0
    vcpu.set_sregs(sregs)


def start_vcpu(vcpu, start: CpuStart, pml4: int) -> None:
    if start.long_mode:
        enter_long_mode(vcpu, pml4)
    else:
        enter_real_mode(vcpu)
    regs = vcpu.get_regs()
    regs.rip = start.rip
    regs.rsp = start.rsp
    regs.rdi = start.rdi
    regs.rflags = RFLAGS_RESERVED
    vcpu.set_regs(regs)
