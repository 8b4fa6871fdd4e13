"""x86 CPU state at the first instruction: real mode, or 64-bit long mode with paging.

A 64-bit kernel cannot be entered with paging off, so for ELF kernels the VMM does what
a boot loader would: it writes a GDT and identity-mapping page tables into guest memory
and sets the control registers (Intel SDM vol. 3, 9.8.5 "Initializing IA-32e Mode").
"""

from __future__ import annotations

import struct

from vmm.boot import layout
from vmm.memory import GuestMemory
from vmm.typedtuple import typed_tuple

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
GDT_CODE32 = 0x00CF9A000000FFFF
GDT_DATA = 0x00CF92000000FFFF
GDT_TSS32 = 0x0000_8B00_0000_0067  # busy 32-bit TSS, base 0, limit 0x67
SELECTOR_CODE = 0x08
SELECTOR_DATA = 0x10
# Linux's GDT: Documentation/arch/x86/boot.rst ("64-bit Boot Protocol") wants flat
# __BOOT_CS at 0x10 and __BOOT_DS at 0x18; the PVH ABI wants a flat 32-bit code segment
# (any selector: 0x08 here) and a 32-bit TSS in TR (0x20).
LINUX_GDT = (0, GDT_CODE32, GDT_CODE64, GDT_DATA, GDT_TSS32)
LINUX_SELECTOR_CODE32 = 0x08
LINUX_SELECTOR_CODE64 = 0x10
LINUX_SELECTOR_DATA = 0x18
LINUX_SELECTOR_TSS = 0x20
RFLAGS_RESERVED = 1 << 1  # bit 1 always reads as 1


@typed_tuple
class CpuStart:
    """Where and how the first vCPU starts: real mode, 32-bit protected mode with paging
    off (``protected32``, the PVH entry), or long mode. The registers a boot protocol
    passes its data in are RDI (pyvmm's boot info), RSI (Linux's zero page) and RBX
    (PVH's start info)."""

    long_mode: bool
    rip: int
    rsp: int
    rdi: int = 0
    rsi: int = 0
    rbx: int = 0
    protected32: bool = False
    linux_gdt: bool = False  # LINUX_GDT and its selectors, rather than the boot GDT


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


def write_linux_gdt(memory: GuestMemory) -> None:
    memory.write(layout.BOOT_GDT, struct.pack(f"<{len(LINUX_GDT)}Q", *LINUX_GDT))


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


def _flat_segments(sregs, code: int, data: int, long_code: bool, linux_gdt: bool) -> None:
    _segment(sregs.cs, code, 0xB, long_code=long_code)  # execute/read, accessed
    for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        _segment(seg, data, 0x3, long_code=False)  # read/write, accessed
    sregs.gdt.base = layout.BOOT_GDT
    sregs.gdt.limit = (len(LINUX_GDT) if linux_gdt else 3) * 8 - 1
    if linux_gdt:
        tr = sregs.tr
        tr.base, tr.limit, tr.selector, tr.type, tr.present = 0, 0x67, LINUX_SELECTOR_TSS, 0xB, 1
        tr.dpl = tr.s = tr.l = tr.db = tr.g = 0


def enter_protected_mode(vcpu) -> None:
    """32-bit protected mode, paging off, flat segments, a 32-bit TSS: the PVH ABI's
    entry state (xen/include/public/arch-x86/hvm/start_info.h, "x86/HVM direct boot")."""
    sregs = vcpu.get_sregs()
    _flat_segments(sregs, LINUX_SELECTOR_CODE32, LINUX_SELECTOR_DATA, False, True)
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET
    sregs.cr4 = 0
    sregs.efer = 0
    vcpu.set_sregs(sregs)


def enter_long_mode(vcpu, pml4: int, linux_gdt: bool = False) -> None:
    """Set the special registers of a vCPU already in 64-bit mode, paging on."""
    sregs = vcpu.get_sregs()
    if linux_gdt:
        _flat_segments(sregs, LINUX_SELECTOR_CODE64, LINUX_SELECTOR_DATA, True, True)
    else:
        _flat_segments(sregs, SELECTOR_CODE, SELECTOR_DATA, True, False)
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
        enter_long_mode(vcpu, pml4, start.linux_gdt)
    elif start.protected32:
        enter_protected_mode(vcpu)
    else:
        enter_real_mode(vcpu)
    regs = vcpu.get_regs()
    regs.rip = start.rip
    regs.rsp = start.rsp
    regs.rdi = start.rdi
    regs.rsi = start.rsi
    regs.rbx = start.rbx
    regs.rflags = RFLAGS_RESERVED
    vcpu.set_regs(regs)
