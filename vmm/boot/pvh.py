"""The PVH boot protocol: an ELF vmlinux entered at its physical 32-bit entry point.

Xen's "x86/HVM direct boot ABI" (xen/include/public/arch-x86/hvm/start_info.h, and
docs/misc/pvh.pandoc), which KVM VMMs use too (Firecracker, QEMU's -kernel vmlinux,
cloud-hypervisor): the kernel names its entry in an ELF note of type
XEN_ELFNOTE_PHYS32_ENTRY; the VMM loads the PT_LOAD segments at their physical
addresses, writes an ``hvm_start_info`` (with a memory map, the command line and the
initrd as module 0) and starts the vCPU in 32-bit protected mode, paging off, with EBX
pointing at it.
"""

from __future__ import annotations

import struct

from vmm.boot import e820, elf, layout, linux
from vmm.boot.x86 import CpuStart, write_linux_gdt
from vmm.memory import GuestMemory

XEN_ELFNOTE_PHYS32_ENTRY = 18  # xen/include/public/elfnote.h
XEN_NOTE_NAME = b"Xen"
HVM_START_MAGIC_VALUE = 0x336EC578  # start_info.h
HVM_START_INFO_VERSION = 1  # version 1 has the memory map
# struct hvm_start_info: magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr,
# rsdp_paddr, memmap_paddr, memmap_entries, reserved.
START_INFO = struct.Struct("<IIIIQQQQII")
MODLIST_ENTRY = struct.Struct("<QQQQ")  # hvm_modlist_entry: paddr, size, cmdline_paddr, 0
MEMMAP_ENTRY = struct.Struct("<QQII")  # hvm_memmap_table_entry: addr, size, type, 0
MODLIST = layout.LINUX_BOOT_TABLES + 0xC00  # after room for 128 memory-map entries
PVH_CMDLINE_LIMIT = 2048  # Linux x86's COMMAND_LINE_SIZE; PVH has no header to ask


def entry_point(data: bytes, name: str) -> int | None:
    """The PVH entry point of an ELF image, or None if it has none (then it is not a
    PVH kernel). The note's value is a 32-bit physical address, stored in 4 or 8 bytes."""
    for note in elf.notes(data, name):
        if note.name == XEN_NOTE_NAME and note.type == XEN_ELFNOTE_PHYS32_ENTRY:
            if len(note.desc) not in (4, 8):
                raise linux.LinuxBootError(
                    f"{name}: its PVH entry note holds {len(note.desc)} bytes, not 4 or 8"
                )
            entry = int.from_bytes(note.desc, "little")
            if entry >= 1 << 32:
                raise linux.LinuxBootError(f"{name}: PVH entry {entry:#x} is above 4 GiB")
            return entry
    return None


def load(
    memory: GuestMemory, data: bytes, name: str, entry: int, cmdline: str, initrd: bytes | None
) -> CpuStart:
    image = elf.parse(data, name, entry=entry)
    for i, seg in enumerate(image.segments):
        if seg.addr < layout.KERNEL_MIN or not memory.contains(seg.addr, seg.memsz):
            raise linux.LinuxBootError(
                f"segment {i} of {name} at {seg.addr:#x}+{seg.memsz:#x} does not fit in guest "
                f"memory ({memory.size >> 20} MiB): give the guest more --memory"
            )
        memory.write(seg.addr, data[seg.offset : seg.offset + seg.filesz])
    cmdline_addr = linux.write_cmdline(memory, cmdline, PVH_CMDLINE_LIMIT)
    memmap = e820.memory_map(memory)
    for i, m in enumerate(memmap):
        memory.write(
            layout.LINUX_BOOT_TABLES + i * MEMMAP_ENTRY.size,
            MEMMAP_ENTRY.pack(m.addr, m.size, m.type, 0),
        )
    nr_modules = 0
    if initrd is not None:
        addr = linux.place_initrd(memory, initrd, floor=image.end, ceiling=1 << 32)
        memory.write(MODLIST, MODLIST_ENTRY.pack(addr, len(initrd), 0, 0))
        nr_modules = 1
    info = START_INFO.pack(
        HVM_START_MAGIC_VALUE, HVM_START_INFO_VERSION, 0, nr_modules,
        MODLIST if nr_modules else 0, cmdline_addr, 0,
        layout.LINUX_BOOT_TABLES, len(memmap), 0,
    )  # fmt: skip
    memory.write(layout.LINUX_BOOT_PARAMS, info)
    write_linux_gdt(memory)
    return CpuStart(
        long_mode=False, rip=entry, rsp=0, rbx=layout.LINUX_BOOT_PARAMS,
        protected32=True, linux_gdt=True,
    )  # fmt: skip
