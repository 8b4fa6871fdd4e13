"""The Linux x86 boot protocol for a bzImage, entered at its 64-bit entry point.

Documentation/arch/x86/boot.rst: the file starts with the real-mode setup code, whose
"setup header" at 0x1f1 describes the kernel; the protected-mode kernel follows it, at
``(setup_sects + 1) * 512`` bytes. A 64-bit boot loader (section "64-bit Boot
Protocol", as cloud-hypervisor's and Firecracker's loaders do it) skips the setup code:
it copies the protected-mode kernel to its load address, fills a zero page
(``struct boot_params``: the setup header, the e820 map, the command line and initrd
pointers), identity-maps memory and jumps to load address + 0x200 in long mode with RSI
pointing at the zero page. The decompressor inside the kernel does the rest.

Every header field is read from an untrusted file: each is checked against the file's
size before use, and the values against what this loader and guest memory can do.
"""

from __future__ import annotations

import struct

from vmm.boot import e820, layout, linux
from vmm.boot.x86 import CpuStart, write_linux_gdt, write_page_tables
from vmm.memory import GuestMemory
from vmm.typedtuple import typed_tuple

# Setup header fields: offset in the file and in the zero page (boot.rst, "The Real-Mode
# Kernel Header"), struct format, and the protocol version that introduced them.
HDR_SETUP_SECTS = 0x1F1  # u8: 512-byte sectors of setup code after the boot sector
HDR_SYSSIZE = 0x1F4  # u32: protected-mode code size in 16-byte paragraphs
HDR_BOOT_FLAG = 0x1FE  # u16: 0xAA55
HDR_JUMP_END = 0x201  # u8: the setup header ends at 0x202 + this byte
HDR_HEADER = 0x202  # "HdrS"
HDR_VERSION = 0x206  # u16: boot protocol version, major << 8 | minor
HDR_TYPE_OF_LOADER = 0x210  # u8: written by the loader
HDR_LOADFLAGS = 0x211  # u8
HDR_RAMDISK_IMAGE = 0x218  # u32: written by the loader
HDR_RAMDISK_SIZE = 0x21C  # u32: written by the loader
HDR_CMD_LINE_PTR = 0x228  # u32: written by the loader (2.02)
HDR_INITRD_ADDR_MAX = 0x22C  # u32: highest address the initrd may occupy (2.03)
HDR_XLOADFLAGS = 0x236  # u16 (2.12)
HDR_CMDLINE_SIZE = 0x238  # u32: maximum command line length without the NUL (2.06)
HDR_PREF_ADDRESS = 0x258  # u64: preferred load address (2.10)
HDR_INIT_SIZE = 0x260  # u32: memory the kernel needs from its load address (2.10)
HDR_END_MAX = 0x290  # the setup header ends before this in struct boot_params

BOOT_FLAG = 0xAA55
HEADER_MAGIC = b"HdrS"
MIN_VERSION = 0x0206  # cmdline_size; earlier headers cannot say how long a line fits
VERSION_XLOADFLAGS = 0x020C
VERSION_PREF_ADDRESS = 0x020A
LOADED_HIGH = 1 << 0  # loadflags: the protected-mode code goes at 0x100000 (a bzImage)
XLF_KERNEL_64 = 1 << 0  # xloadflags: has the 64-bit entry at load address + 0x200
TYPE_OF_LOADER_UNDEFINED = 0xFF  # boot.rst: "0xFF: undefined" for loaders without an ID
ENTRY_64_OFFSET = 0x200
SECTOR = 512
DEFAULT_SETUP_SECTS = 4  # boot.rst: a setup_sects of 0 means 4
DEFAULT_LOAD_ADDRESS = 0x100000

# struct boot_params (arch/x86/include/uapi/asm/bootparam.h)
ZERO_PAGE_SIZE = 4096
ZP_E820_ENTRIES = 0x1E8  # u8
ZP_E820_TABLE = 0x2D0  # 128 x {u64 addr, u64 size, u32 type}, packed
E820_ENTRY = struct.Struct("<QQI")
E820_MAX_ENTRIES_ZEROPAGE = 128


@typed_tuple
class SetupHeader:
    version: int
    setup_size: int  # bytes before the protected-mode kernel in the file
    kernel_size: int  # bytes of protected-mode kernel in the file
    header_end: int  # the header's bytes are [0x1f1, header_end) of the file
    initrd_addr_max: int
    cmdline_size: int
    load_address: int
    init_size: int


def is_bzimage(data: bytes) -> bool:
    return data[HDR_HEADER : HDR_HEADER + 4] == HEADER_MAGIC


def _field(data: bytes, offset: int, fmt: str, name: str) -> int:
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        raise linux.LinuxBootError(
            f"{name} is truncated: {len(data)} bytes, its setup header needs {offset + size}"
        )
    return struct.unpack_from(fmt, data, offset)[0]


def parse_header(data: bytes, name: str) -> SetupHeader:
    """Read and check the setup header; refuse what this loader cannot boot."""
    if _field(data, HDR_BOOT_FLAG, "<H", name) != BOOT_FLAG:
        raise linux.LinuxBootError(f"{name}: no boot flag 0xaa55 at {HDR_BOOT_FLAG:#x}")
    if data[HDR_HEADER : HDR_HEADER + 4] != HEADER_MAGIC:
        raise linux.LinuxBootError(f'{name}: no "HdrS" at {HDR_HEADER:#x}: not a bzImage')
    version = _field(data, HDR_VERSION, "<H", name)
    if version < MIN_VERSION:
        raise linux.LinuxBootError(
            f"{name}: boot protocol {version >> 8}.{version & 0xFF:02}; pyvmm needs 2.06 or later"
        )
    header_end = 0x202 + _field(data, HDR_JUMP_END, "<B", name)
    if header_end > HDR_END_MAX:
        raise linux.LinuxBootError(f"{name}: setup header claims to end at {header_end:#x}")
    _field(data, header_end - 1, "<B", name)  # the whole header is in the file
    if not _field(data, HDR_LOADFLAGS, "<B", name) & LOADED_HIGH:
        raise linux.LinuxBootError(f"{name}: loadflags lack LOADED_HIGH: a zImage, not a bzImage")
    xloadflags = _field(data, HDR_XLOADFLAGS, "<H", name) if version >= VERSION_XLOADFLAGS else 0
    if not xloadflags & XLF_KERNEL_64:
        raise linux.LinuxBootError(
            f"{name}: no 64-bit entry point (xloadflags XLF_KERNEL_64, boot protocol 2.12)"
        )
    setup_sects = _field(data, HDR_SETUP_SECTS, "<B", name) or DEFAULT_SETUP_SECTS
    setup_size = (setup_sects + 1) * SECTOR
    kernel_size = _field(data, HDR_SYSSIZE, "<I", name) * 16
    if kernel_size == 0 or setup_size + kernel_size > len(data):
        raise linux.LinuxBootError(
            f"{name} is truncated: setup ({setup_size} bytes) and kernel ({kernel_size} bytes) "
            f"need more than its {len(data)} bytes"
        )
    load_address = DEFAULT_LOAD_ADDRESS
    init_size = kernel_size
    if version >= VERSION_PREF_ADDRESS:
        load_address = _field(data, HDR_PREF_ADDRESS, "<Q", name)
        init_size = _field(data, HDR_INIT_SIZE, "<I", name)
    if load_address < layout.KERNEL_MIN or load_address % 4096:
        raise linux.LinuxBootError(f"{name}: preferred load address {load_address:#x} is unusable")
    if init_size < kernel_size:
        raise linux.LinuxBootError(f"{name}: init_size {init_size:#x} is smaller than the kernel")
    return SetupHeader(
        version=version,
        setup_size=setup_size,
        kernel_size=kernel_size,
        header_end=header_end,
        initrd_addr_max=_field(data, HDR_INITRD_ADDR_MAX, "<I", name),
        cmdline_size=_field(data, HDR_CMDLINE_SIZE, "<I", name),
        load_address=load_address,
        init_size=init_size,
    )


def load(
    memory: GuestMemory, data: bytes, name: str, cmdline: str, initrd: bytes | None
) -> CpuStart:
    hdr = parse_header(data, name)
    end = hdr.load_address + hdr.init_size
    if not memory.contains(hdr.load_address, hdr.init_size) or end > layout.LOW_RAM_END:
        raise linux.LinuxBootError(
            f"{name} needs {hdr.load_address:#x}+{hdr.init_size:#x} (init_size) in guest "
            f"memory ({memory.size >> 20} MiB): give the guest more --memory"
        )
    kernel = data[hdr.setup_size : hdr.setup_size + hdr.kernel_size]
    memory.write(hdr.load_address, kernel)

    zero_page = bytearray(ZERO_PAGE_SIZE)
    zero_page[HDR_SETUP_SECTS : hdr.header_end] = data[HDR_SETUP_SECTS : hdr.header_end]
    struct.pack_into("<B", zero_page, HDR_TYPE_OF_LOADER, TYPE_OF_LOADER_UNDEFINED)
    cmdline_addr = linux.write_cmdline(memory, cmdline, hdr.cmdline_size + 1)
    struct.pack_into("<I", zero_page, HDR_CMD_LINE_PTR, cmdline_addr)
    if initrd is not None:
        # initrd_addr_max is the highest byte address the initrd may use.
        addr = linux.place_initrd(memory, initrd, floor=end, ceiling=hdr.initrd_addr_max + 1)
        struct.pack_into("<II", zero_page, HDR_RAMDISK_IMAGE, addr, len(initrd))
    memmap = e820.memory_map(memory)[:E820_MAX_ENTRIES_ZEROPAGE]
    zero_page[ZP_E820_ENTRIES] = len(memmap)
    for i, m in enumerate(memmap):
        E820_ENTRY.pack_into(zero_page, ZP_E820_TABLE + i * E820_ENTRY.size, m.addr, m.size, m.type)
    memory.write(layout.LINUX_BOOT_PARAMS, bytes(zero_page))

    write_linux_gdt(memory)
    write_page_tables(memory, [(r.gpa, r.end) for r in memory.regions])
    return CpuStart(
        long_mode=True, rip=hdr.load_address + ENTRY_64_OFFSET, rsp=layout.BOOT_STACK_TOP,
        rsi=layout.LINUX_BOOT_PARAMS, linux_gdt=True,
    )  # fmt: skip
