"""The Linux loaders on crafted images: what each writes where, and every refusal.

The images are built here field by field (boot.rst's setup header; an ELF with a PVH
note), so each test changes exactly one thing a real kernel file could get wrong.
"""

from __future__ import annotations

import struct

import pytest
from vmtest import assert_one_line_error, needs_kvm, run_pyvmm

from vmm.boot import e820, layout, linux, loader, pvh
from vmm.boot.bootinfo import VirtioSlot
from vmm.boot.elf import ElfError
from vmm.boot.linux import LinuxBootError
from vmm.boot.loader import BootRequest, KernelError
from vmm.memory import GuestMemory

MIB = 1 << 20
KERNEL_BYTES = bytes(range(256)) * 64  # 16 KiB of recognisable "protected-mode kernel"


@pytest.fixture
def mem():
    m = GuestMemory(layout.ram_regions(64 * MIB))
    yield m
    m.close()


def make_bzimage(**fields) -> bytearray:
    """A bzImage of protocol 2.15: one setup sector after the boot sector, then the kernel."""
    f = dict(
        setup_sects=1, boot_flag=0xAA55, jump_end=0x6A, version=0x020F, loadflags=1,
        initrd_addr_max=0x7FFFFFFF, xloadflags=1, cmdline_size=2047,
        pref_address=0x1000000, init_size=0x100000, syssize=len(KERNEL_BYTES) // 16,
    )  # fmt: skip
    f.update(fields)
    setup = (f["setup_sects"] or 4) + 1
    data = bytearray(setup * 512)
    struct.pack_into("<B", data, 0x1F1, f["setup_sects"])
    struct.pack_into("<I", data, 0x1F4, f["syssize"])
    struct.pack_into("<H", data, 0x1FE, f["boot_flag"])
    struct.pack_into("<B", data, 0x201, f["jump_end"])
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, f["version"])
    struct.pack_into("<B", data, 0x211, f["loadflags"])
    struct.pack_into("<I", data, 0x22C, f["initrd_addr_max"])
    struct.pack_into("<H", data, 0x236, f["xloadflags"])
    struct.pack_into("<I", data, 0x238, f["cmdline_size"])
    struct.pack_into("<Q", data, 0x258, f["pref_address"])
    struct.pack_into("<I", data, 0x260, f["init_size"])
    return data + KERNEL_BYTES


ENTRY = 0x100040
CODE = b"\xf4" * 64  # hlt


def make_pvh(note_desc: bytes = struct.pack("<Q", ENTRY), note_type: int = 18,
             note_name: bytes = b"Xen\0", seg_addr: int = 0x100000,
             note_cut: int = 0) -> bytes:  # fmt: skip
    """An ELF64 vmlinux in miniature: one PT_LOAD of code at 1 MiB, one PT_NOTE with
    the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), a virtual e_entry as vmlinux has."""
    ehdr_size, phdr_size = 64, 56
    note = struct.pack("<III", len(note_name), len(note_desc), note_type)
    note += note_name.ljust((len(note_name) + 3) & ~3, b"\0")
    note += note_desc.ljust((len(note_desc) + 3) & ~3, b"\0")
    note_off = ehdr_size + 2 * phdr_size
    code_off = (note_off + len(note) + 15) & ~15
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 62, 1, 0xFFFFFFFF81000000,
                       ehdr_size, 0, 0, ehdr_size, phdr_size, 2, 64, 0, 0)  # fmt: skip
    load = struct.pack("<IIQQQQQQ", 1, 5, code_off, 0xFFFFFFFF81000000, seg_addr,
                       len(CODE), len(CODE) + 4096, 16)  # fmt: skip
    pnote = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note) - note_cut,
                        len(note), 4)  # fmt: skip
    data = bytearray(ehdr + load + pnote)
    data += note
    data += bytes(code_off - len(data)) + CODE
    return bytes(data)


def boot(mem, tmp_path, data, name="kernel", initrd: bytes | None = None, cmdline="console=ttyS0"):
    path = tmp_path / name
    path.write_bytes(data)
    initrd_path = None
    if initrd is not None:
        initrd_path = tmp_path / "initrd"
        initrd_path.write_bytes(initrd)
    request = BootRequest(str(path), cmdline, initrd=str(initrd_path) if initrd_path else None)
    return loader.load(mem, request)


# --- bzImage -------------------------------------------------------------------------


def test_bzimage_zero_page_kernel_and_entry(mem, tmp_path):
    initrd = b"070701" + bytes(5000)
    start = boot(mem, tmp_path, make_bzimage(), initrd=initrd, cmdline="console=ttyS0 quiet")
    assert start.long_mode and start.linux_gdt
    assert start.rip == 0x1000000 + 0x200 and start.rsi == layout.LINUX_BOOT_PARAMS
    assert mem.read(0x1000000, len(KERNEL_BYTES)) == KERNEL_BYTES
    zp = mem.read(layout.LINUX_BOOT_PARAMS, 4096)
    assert zp[0x202:0x206] == b"HdrS" and zp[0x210] == 0xFF  # header copied; loader type
    (cmd_ptr,) = struct.unpack_from("<I", zp, 0x228)
    assert mem.read(cmd_ptr, 20) == b"console=ttyS0 quiet\0"
    image, size = struct.unpack_from("<II", zp, 0x218)
    assert size == len(initrd) and mem.read(image, size) == initrd
    assert image >= 0x1000000 + 0x100000 and image + size <= 64 * MIB  # above init_size
    n = zp[0x1E8]
    table = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(n)]
    assert table == [tuple(e) for e in e820.memory_map(mem)]
    assert table[-1] == (0x100000, 63 * MIB, e820.E820_RAM)


def test_bzimage_setup_sects_zero_means_four(mem, tmp_path):
    """boot.rst: "If this field is 0, the real value is 4" (old kernels wrote 0)."""
    start = boot(mem, tmp_path, make_bzimage(setup_sects=0))
    assert start.rip == 0x1000000 + 0x200
    assert mem.read(0x1000000, len(KERNEL_BYTES)) == KERNEL_BYTES  # found after 5 sectors


def test_bzimage_initrd_stays_under_initrd_addr_max(mem, tmp_path):
    start = boot(mem, tmp_path, make_bzimage(initrd_addr_max=0x1FFFFFF), initrd=bytes(8192))
    zp = mem.read(start.rsi, 4096)
    image, size = struct.unpack_from("<II", zp, 0x218)
    assert image + size - 1 <= 0x1FFFFFF


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(boot_flag=0x1234), "boot flag"),
        (dict(version=0x0205), "boot protocol 2.05"),
        (dict(jump_end=0xA0), "setup header claims to end"),
        (dict(loadflags=0), "LOADED_HIGH"),
        (dict(xloadflags=0), "64-bit entry"),
        (dict(version=0x020B), "64-bit entry"),  # no xloadflags before 2.12
        (dict(syssize=0), "truncated"),
        (dict(syssize=len(KERNEL_BYTES) // 16 + 1), "truncated"),
        (dict(pref_address=0x80000), "load address"),
        (dict(pref_address=0x1000100), "load address"),
        (dict(init_size=0x100), "init_size"),
        (dict(init_size=0x8000000), "more --memory"),
    ],
)
def test_bzimage_refusals(mem, tmp_path, fields, message):
    with pytest.raises(LinuxBootError, match=message):
        boot(mem, tmp_path, make_bzimage(**fields))


@pytest.mark.parametrize("cut", [0x1F0, 0x1FF, 0x207, 0x237, 0x25F, 0x263, 0x3FF])
def test_truncated_bzimage_header(mem, tmp_path, cut):
    data = make_bzimage()[:cut]
    data[0x202:0x206] = b"HdrS" if cut >= 0x206 else data[0x202:0x206]
    with pytest.raises((LinuxBootError, KernelError), match="truncated|unknown format|boot flag"):
        boot(mem, tmp_path, bytes(data))


def test_bzimage_command_line_longer_than_the_kernel_takes(mem, tmp_path):
    with pytest.raises(LinuxBootError, match="command line is 20 bytes; this kernel takes 10"):
        boot(mem, tmp_path, make_bzimage(cmdline_size=10), cmdline="x" * 20)


def test_bzimage_initrd_that_does_not_fit(mem, tmp_path):
    with pytest.raises(LinuxBootError, match="initrd"):
        boot(mem, tmp_path, make_bzimage(initrd_addr_max=0x10FFFFF), initrd=bytes(4096))


# --- PVH ------------------------------------------------------------------------------


def test_pvh_start_info_memory_map_and_initrd(mem, tmp_path):
    initrd = b"070701" + bytes(3000)
    start = boot(mem, tmp_path, make_pvh(), initrd=initrd, cmdline="console=ttyS0")
    assert start.protected32 and not start.long_mode and start.linux_gdt
    assert start.rip == ENTRY and start.rbx == layout.LINUX_BOOT_PARAMS
    assert mem.read(0x100000, len(CODE)) == CODE
    info = pvh.START_INFO.unpack(mem.read(start.rbx, pvh.START_INFO.size))
    magic, version, _flags, nr_modules, modlist, cmdline, _rsdp, memmap, entries, _ = info
    assert (magic, version, nr_modules) == (pvh.HVM_START_MAGIC_VALUE, 1, 1)
    assert mem.read(cmdline, 14) == b"console=ttyS0\0"
    got = [pvh.MEMMAP_ENTRY.unpack(mem.read(memmap + 24 * i, 24))[:3] for i in range(entries)]
    assert got == [tuple(e) for e in e820.memory_map(mem)]
    paddr, size, _, _ = pvh.MODLIST_ENTRY.unpack(mem.read(modlist, 32))
    assert size == len(initrd) and mem.read(paddr, size) == initrd


def test_pvh_entry_in_a_4_byte_note_and_no_initrd(mem, tmp_path):
    start = boot(mem, tmp_path, make_pvh(note_desc=struct.pack("<I", ENTRY)))
    info = pvh.START_INFO.unpack(mem.read(start.rbx, pvh.START_INFO.size))
    assert start.rip == ENTRY and info[3] == 0 and info[4] == 0


def test_elf_without_the_pvh_note_is_not_linux(mem, tmp_path):
    path = tmp_path / "k"
    path.write_bytes(make_pvh(note_type=17))
    assert loader.open_kernel(str(path), mem).format == "elf"


@pytest.mark.parametrize(
    "kw, error, message",
    [
        (dict(note_desc=b"\1\2\3"), LinuxBootError, "holds 3 bytes"),
        (dict(note_desc=struct.pack("<Q", 1 << 33)), LinuxBootError, "above 4 GiB"),
        (dict(note_desc=struct.pack("<Q", 0x200000)), ElfError, "entry point"),
        (dict(note_cut=4), ElfError, "runs past the end of note segment"),
        (dict(seg_addr=0x80000), LinuxBootError, "does not fit"),
        (dict(seg_addr=0x3FFF000), LinuxBootError, "does not fit"),
    ],
)
def test_pvh_refusals(mem, tmp_path, kw, error, message):
    data = make_pvh(**kw)
    if "seg_addr" in kw:  # keep the entry inside the moved segment
        data = make_pvh(note_desc=struct.pack("<Q", kw["seg_addr"]), **kw)
    with pytest.raises(error, match=message):
        boot(mem, tmp_path, data)


def test_pvh_note_segment_past_the_end_of_the_file(mem, tmp_path):
    data = make_pvh()
    with pytest.raises(ElfError, match="note segment 1 runs past the end of the file"):
        boot(mem, tmp_path, data[:190])  # inside the note


def test_initrd_is_refused_for_a_non_linux_kernel(mem, tmp_path):
    with pytest.raises(KernelError, match="--initrd is for Linux kernels"):
        boot(mem, tmp_path, make_pvh(note_type=17), initrd=b"x")


# --- the command line ---------------------------------------------------------------


def test_command_line_announces_disks_and_adds_pvm_masks_only_under_pvm():
    slots = [VirtioSlot(0xD0000000, 0x200, 5), VirtioSlot(0xD0001000, 0x200, 9)]
    hw = linux.command_line("console=ttyS0", slots, pvm=False)
    assert hw == (
        "console=ttyS0 virtio_mmio.device=512@0xd0000000:5 virtio_mmio.device=512@0xd0001000:9"
    )
    assert linux.command_line("console=ttyS0", [], pvm=True) == (
        "console=ttyS0 noxsave clearcpuid=308,151,297,580"
    )


# --- through the CLI: one line, exit status 2 -----------------------------------------


@needs_kvm
def test_truncated_bzimage_is_one_line_through_the_cli(tmp_path):
    path = tmp_path / "bzImage"
    path.write_bytes(bytes(make_bzimage()[:0x600]))
    proc = run_pyvmm("boot", "--kernel", str(path))
    assert_one_line_error(proc, "pyvmm: kernel", "is truncated")


@needs_kvm
def test_initrd_problems_are_one_line_through_the_cli(tmp_path, guest_build):
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(make_pvh())
    missing = run_pyvmm("boot", "--kernel", str(kernel), "--initrd", str(tmp_path / "nope"))
    assert_one_line_error(missing, "initrd", "nope")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"070701")
    tiny = run_pyvmm("boot", "--initrd", str(initrd))
    assert_one_line_error(tiny, "--initrd is for Linux kernels")
