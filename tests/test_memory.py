"""Guest memory: every guest-physical access is bounds-checked."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmm.memory import GuestMemory, GuestMemoryError, HostMemoryError, parse_size
from vmm.vm.bus import Bus, BusError


@pytest.fixture
def mem():
    m = GuestMemory([(0, 0x10000), (0x100000, 0x1000)])
    yield m
    m.close()


def test_write_then_read_round_trips_in_each_region(mem):
    mem.write(0x10, b"hello")
    mem.write_u64(0x100FF8, 0x1122334455667788)
    assert mem.read(0x10, 5) == b"hello"
    assert mem.read_u64(0x100FF8) == 0x1122334455667788
    assert mem.read_u16(0x100FF8) == 0x7788


@pytest.mark.parametrize(
    "gpa,size",
    [(0x10000, 1), (0xFFFF, 2), (0x100FFF, 2), (0x20000, 4), (-1, 1), (0x101000, 1), (0, 0x10001)],
)
def test_access_outside_or_across_regions_is_refused(mem, gpa, size):
    with pytest.raises(GuestMemoryError):
        mem.read(gpa, size)
    with pytest.raises(GuestMemoryError):
        mem.write(gpa, b"\0" * size)
    assert not mem.contains(gpa, size)


def test_view_is_zero_copy_into_guest_memory(mem):
    v = mem.view(0x200, 4)
    v[:] = b"abcd"
    assert mem.read(0x200, 4) == b"abcd"
    v.release()


def test_touched_bytes_counts_the_pages_written_and_nothing_else():
    page = 4096
    with_neighbours = [GuestMemory([(0, 64 * page), (1 << 32, 16 * page)]) for _ in range(2)]
    mem = with_neighbours[0]  # a second mapping beside it, which the kernel may merge
    try:
        assert mem.touched_bytes() == 0
        mem.write(0, b"x")
        mem.write(5 * page + 100, b"y" * (page + 1))  # straddles two pages
        mem.write((1 << 32) + 15 * page, b"z")
        assert mem.touched_bytes() == 4 * page
    finally:
        for m in with_neighbours:
            m.close()


def test_overlapping_or_unaligned_regions_are_refused():
    with pytest.raises(GuestMemoryError):
        GuestMemory([(0, 0x2000), (0x1000, 0x1000)])
    with pytest.raises(GuestMemoryError):
        GuestMemory([(0x10, 0x1000)])


def overcommit_always() -> bool:
    with open("/proc/sys/vm/overcommit_memory") as f:
        return f.read().strip() == "1"


@pytest.mark.skipif(overcommit_always(), reason="vm.overcommit_memory=1 maps any size")
def test_more_memory_than_the_host_can_map_is_a_pyvmm_error():
    # 64 TiB: more than any host's RAM and swap, so the kernel refuses the mapping
    # (nothing is allocated either way: anonymous memory is backed when touched).
    with pytest.raises(HostMemoryError, match="the host cannot map 67108865 MiB"):
        GuestMemory([(0, 1 << 20), (1 << 32, 1 << 46)])


@pytest.mark.parametrize(
    "text,size",
    [
        ("64M", 64 << 20),
        ("1G", 1 << 30),
        ("512k", 512 << 10),
        ("4096", 4096),
        ("2GiB", 2 << 30),
        (" 8m ", 8 << 20),
    ],
)
def test_parse_size_accepts_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5G", "64X", "lots"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_size(text)


# The sizes parse_size takes, as a regular expression: it parses them by hand (a boot
# does not import re), and this is the grammar it must keep to.
SIZE = re.compile(r"\s*([0-9]+)\s*([kKmMgGtT]?)([iI]?[bB])?\s*", re.ASCII)
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@given(st.text(alphabet=" \t0123456789kKmMgGtTiIbBx.-", max_size=12))
def test_parse_size_takes_exactly_the_grammar(text):
    m = SIZE.fullmatch(text)
    if m is None:
        with pytest.raises(ValueError):
            parse_size(text)
    else:
        assert parse_size(text) == int(m.group(1)) * UNITS[m.group(2).lower()]


class Recorder:
    def __init__(self):
        self.writes = []

    def read(self, offset, size):
        return bytes([offset]) * size

    def write(self, offset, data):
        self.writes.append((offset, data))


def test_bus_hands_devices_the_offset_from_their_base():
    bus = Bus("io")
    dev = Recorder()
    bus.insert(dev, 0x3F8, 8)
    assert bus.read(0x3FD, 1) == b"\x05"
    assert bus.write(0x3F8, b"x")
    assert dev.writes == [(0, b"x")]


def test_bus_unclaimed_reads_all_ones_and_writes_are_dropped():
    bus = Bus("io")
    bus.insert(Recorder(), 0x10, 4)
    assert bus.read(0x14, 2) == b"\xff\xff"
    assert bus.read(0x13, 2) == b"\xff\xff"  # straddles the end of the device
    assert not bus.write(0x9, b"x")


def test_bus_refuses_overlapping_devices():
    bus = Bus("io")
    bus.insert(Recorder(), 0x10, 4)
    with pytest.raises(BusError):
        bus.insert(Recorder(), 0x13, 1)
    with pytest.raises(BusError):
        bus.insert(Recorder(), 0x0, 0x11)
    bus.insert(Recorder(), 0x14, 1)
