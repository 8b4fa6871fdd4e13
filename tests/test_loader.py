"""Kernel and program loading: formats are detected, and bad files fail cleanly."""

import struct

import pytest

from vmm.boot import elf, layout, loader
from vmm.boot.bootinfo import BOOT_INFO_MAGIC
from vmm.boot.elf import ElfError
from vmm.boot.linux import LinuxBootError
from vmm.boot.loader import BootRequest, KernelError
from vmm.boot.x86 import PTE_PAGE_SIZE, PTE_PRESENT, PTE_USER
from vmm.inputfile import InputFileError
from vmm.memory import GuestMemory

LOAD_ERRORS = (KernelError, ElfError, InputFileError)


@pytest.fixture
def mem():
    m = GuestMemory(layout.ram_regions(64 << 20))
    yield m
    m.close()


@pytest.fixture
def kernel(guest_build):
    return (guest_build / "kernel.elf").read_bytes()


def load(mem, tmp_path, data, name="k.elf", **kw):
    path = tmp_path / name
    path.write_bytes(data)
    return loader.load(mem, BootRequest(str(path), **kw))


def test_elf_kernel_is_loaded_and_entered_in_long_mode_with_boot_info(
    mem, tmp_path, kernel, guest_build
):
    start = load(mem, tmp_path, kernel, cmdline="hello", program=str(guest_build / "hello"))
    image = elf.parse(kernel)
    assert start.long_mode and start.rip == image.entry and start.rdi == layout.BOOT_INFO
    seg = image.segments[0]
    assert mem.read(seg.addr, seg.filesz) == kernel[seg.offset : seg.offset + seg.filesz]
    magic, _, mem_size = struct.unpack_from("<IIQ", mem.read(layout.BOOT_INFO, 16))
    assert magic == BOOT_INFO_MAGIC and mem_size == 64 << 20
    assert mem.read(layout.CMDLINE, 6) == b"hello\0"
    # The identity map: 2 MiB pages, supervisor-only at the leaf.
    pde = mem.read_u64(layout.PAGE_DIRS + 8 * 3)
    assert pde & ~0xFFF == 3 << 21 and pde & PTE_PAGE_SIZE and pde & PTE_PRESENT
    assert not pde & PTE_USER


def test_program_is_placed_2mib_aligned_at_the_top_of_memory(mem, tmp_path, kernel, guest_build):
    load(mem, tmp_path, kernel, program=str(guest_build / "hello"))
    _, _, _, _, _, _, _, addr, size = struct.unpack_from(
        "<IIQQQIIQQ", mem.read(layout.BOOT_INFO, 56)
    )
    hello = (guest_build / "hello").read_bytes()
    assert addr % (2 << 20) == 0 and size == len(hello)
    assert mem.read(addr, size) == hello


def test_flat_binary_is_started_in_real_mode_at_its_load_address(mem, tmp_path):
    start = load(mem, tmp_path, b"\xf4" * 10, name="lab.bin")
    assert not start.long_mode and start.rip == layout.REAL_MODE_LOAD
    assert mem.read(layout.REAL_MODE_LOAD, 10) == b"\xf4" * 10


def test_boot_sector_signature_marks_a_flat_binary_whatever_its_name(mem, tmp_path):
    sector = bytes(510) + b"\x55\xaa"
    assert not load(mem, tmp_path, sector, name="disk.img").long_mode


def test_missing_kernel(mem, tmp_path):
    with pytest.raises(LOAD_ERRORS, match="does not exist"):
        loader.load(mem, BootRequest(str(tmp_path / "nope")))


def test_empty_kernel(mem, tmp_path):
    with pytest.raises(LOAD_ERRORS, match="is empty"):
        load(mem, tmp_path, b"")


def test_unknown_format(mem, tmp_path):
    with pytest.raises(LOAD_ERRORS, match="unknown format"):
        load(mem, tmp_path, b"#!/bin/sh\necho hi\n" * 40, name="script")


def test_bzimage_is_recognised_by_its_header(mem, tmp_path):
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    with pytest.raises(LinuxBootError, match="boot flag"):
        load(mem, tmp_path, bytes(data), name="vmlinuz")


@pytest.mark.parametrize("cut", [10, 63, 100, 200])
def test_truncated_elf(mem, tmp_path, kernel, cut):
    with pytest.raises(LOAD_ERRORS, match="truncated"):
        load(mem, tmp_path, kernel[:cut])


def test_truncated_segment(mem, tmp_path, kernel):
    seg = elf.parse(kernel).segments[0]
    with pytest.raises(LOAD_ERRORS, match="truncated"):
        load(mem, tmp_path, kernel[: seg.offset + seg.filesz - 1])


def patch(data, offset, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def test_32bit_elf_is_refused(mem, tmp_path, kernel):
    with pytest.raises(LOAD_ERRORS, match="32-bit"):
        load(mem, tmp_path, patch(kernel, 4, "B", 1))


def test_foreign_machine_is_refused(mem, tmp_path, kernel):
    with pytest.raises(LOAD_ERRORS, match="machine 183"):
        load(mem, tmp_path, patch(kernel, 18, "<H", 183))  # EM_AARCH64


def test_shared_object_is_refused(mem, tmp_path, kernel):
    with pytest.raises(LOAD_ERRORS, match="not a static executable"):
        load(mem, tmp_path, patch(kernel, 16, "<H", 3))  # ET_DYN


def test_entry_outside_code_is_refused(mem, tmp_path, kernel):
    with pytest.raises(LOAD_ERRORS, match="entry point"):
        load(mem, tmp_path, patch(kernel, 24, "<Q", 0x7000000))


def test_segment_that_does_not_fit_in_guest_memory(tmp_path, kernel):
    small = GuestMemory([(0, 1 << 20)])
    try:
        with pytest.raises(LOAD_ERRORS, match="does not fit in guest memory"):
            load(small, tmp_path, kernel)
    finally:
        small.close()


def test_segment_in_the_boot_area_is_refused(mem, tmp_path, kernel):
    phoff = struct.unpack_from("<Q", kernel, 32)[0]
    with pytest.raises(LOAD_ERRORS, match="does not fit"):
        load(mem, tmp_path, patch(kernel, phoff + 56 + 24, "<Q", 0x1000))  # 2nd p_paddr


def test_flat_binary_too_big_for_real_mode_memory(mem, tmp_path):
    with pytest.raises(LOAD_ERRORS, match="does not fit"):
        load(mem, tmp_path, b"\x90" * 0xA0000, name="big.bin")


def test_program_too_big_for_guest_memory(tmp_path, kernel, guest_build):
    small = GuestMemory(layout.ram_regions(4 << 20))
    try:
        with pytest.raises(LOAD_ERRORS, match="does not fit"):
            load(small, tmp_path, kernel, program=str(guest_build / "hello"))
    finally:
        small.close()


def test_program_without_the_elf_magic_is_refused(mem, tmp_path, kernel):
    prog = tmp_path / "prog.exe"
    prog.write_bytes(b"MZ" + bytes(4094))
    with pytest.raises(ElfError, match="program .*prog.exe' is not an ELF file"):
        load(mem, tmp_path, kernel, program=str(prog))


def test_kernel_or_program_larger_than_guest_memory_is_refused_unread(mem, tmp_path, kernel):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(mem.size + 1)  # sparse
    with pytest.raises(InputFileError, match="at most 64 MiB .guest memory."):
        loader.load(mem, BootRequest(str(big)))
    with pytest.raises(InputFileError, match="program .* at most 64 MiB"):
        load(mem, tmp_path, kernel, program=str(big))


def test_program_must_be_a_static_executable(mem, tmp_path, kernel):
    prog = tmp_path / "prog"
    prog.write_bytes(b"not an elf at all")
    with pytest.raises(LOAD_ERRORS, match="program"):
        load(mem, tmp_path, kernel, program=str(prog))


def test_overlong_command_line_is_refused(mem, tmp_path, kernel):
    with pytest.raises(LOAD_ERRORS, match="command line"):
        load(mem, tmp_path, kernel, cmdline="x" * 5000)
