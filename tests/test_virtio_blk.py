"""virtio-blk requests end to end: registers, rings, a real image file, hostile drivers."""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from virtio_driver import MEMORY_SIZE, STATUS_UNTOUCHED, BlkRig
from vmtest import immutable

from vmm.devices.virtio import mmio
from vmm.devices.virtio.blk import (
    VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
    VirtioBlk,
    parse_disk_option,
)
from vmm.devices.virtio.virtqueue import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
)
from vmm.errors import PyvmmError
from vmm.memory import GuestMemory

SECTORS = 32
OK, IOERR, UNSUPP = VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP


def pattern(sectors: int = SECTORS) -> bytes:
    """Every sector distinct, so a read from the wrong place shows."""
    return b"".join(bytes([n]) * 512 for n in range(sectors))


class Disk(BlkRig):
    """A guest with one virtio-blk disk, brought up through the transport's registers."""

    def __init__(self, path: str, readonly: bool = False, serial: str | None = None):
        super().__init__(path, readonly, serial)
        self.driver.bring_up()
        self.ring = self.driver.ring

    def request(self, *args, **kwargs):
        return self.driver.request(*args, **kwargs)

    def submit_raw(self, buffers) -> tuple[int, int]:
        """Submit a hand-made chain; return its single used element."""
        self.driver.submit(buffers)
        (element,) = self.ring.used()
        return element

    @property
    def needs_reset(self) -> bool:
        return bool(self.driver.status & mmio.VIRTIO_CONFIG_S_NEEDS_RESET)

    def file_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(pattern())
    return str(path)


@pytest.fixture
def disk(image):
    d = Disk(image)
    yield d
    d.close()


@pytest.fixture
def ro_disk(image):
    d = Disk(image, readonly=True)
    yield d
    d.close()


def test_read_returns_sectors_from_the_image(disk):
    status, data, used_len = disk.request(VIRTIO_BLK_T_IN, 3, read_len=1024)
    assert status == OK
    assert data == bytes([3]) * 512 + bytes([4]) * 512
    assert used_len == 1024 + 1


def test_read_of_last_sector_succeeds(disk):
    status, data, _ = disk.request(VIRTIO_BLK_T_IN, SECTORS - 1, read_len=512)
    assert (status, data) == (OK, bytes([SECTORS - 1]) * 512)


def test_write_lands_in_the_image_file(disk):
    status, _, used_len = disk.request(VIRTIO_BLK_T_OUT, 5, data=b"\xab" * 1024)
    assert (status, used_len) == (OK, 1)
    expected = bytearray(pattern())
    expected[5 * 512 : 7 * 512] = b"\xab" * 1024
    assert disk.file_bytes() == bytes(expected)


def test_written_data_reads_back(disk):
    disk.request(VIRTIO_BLK_T_OUT, 0, data=b"hello".ljust(512, b"."))
    assert disk.request(VIRTIO_BLK_T_IN, 0, read_len=512)[1] == b"hello".ljust(512, b".")


def test_flush_succeeds(disk):
    assert disk.request(VIRTIO_BLK_T_FLUSH)[0] == OK


def test_get_id_returns_20_byte_serial(image):
    d = Disk(image, serial="pyvmm-disk-0")
    try:
        status, data, used_len = d.request(VIRTIO_BLK_T_GET_ID, read_len=20)
    finally:
        d.close()
    assert (status, data, used_len) == (OK, b"pyvmm-disk-0".ljust(20, b"\0"), 21)


def test_get_id_defaults_to_image_file_name(disk):
    assert disk.request(VIRTIO_BLK_T_GET_ID, read_len=20)[1] == b"disk.img".ljust(20, b"\0")


def test_unsupported_request_type_gets_unsupp(disk):
    assert disk.request(11, read_len=512)[0] == UNSUPP  # VIRTIO_BLK_T_DISCARD, not offered


def test_read_past_the_end_fails_with_ioerr(disk):
    assert disk.request(VIRTIO_BLK_T_IN, SECTORS - 1, read_len=1024)[0] == IOERR


def test_write_past_the_end_fails_and_does_not_grow_the_file(disk):
    assert disk.request(VIRTIO_BLK_T_OUT, SECTORS, data=bytes(512))[0] == IOERR
    assert disk.file_bytes() == pattern()


def test_huge_sector_number_fails_with_ioerr(disk):
    assert disk.request(VIRTIO_BLK_T_IN, 2**64 - 1, read_len=512)[0] == IOERR


def test_data_length_not_whole_sectors_fails_with_ioerr(disk):
    assert disk.request(VIRTIO_BLK_T_IN, 0, read_len=100)[0] == IOERR


def test_read_only_disk_refuses_writes_with_ioerr(ro_disk):
    assert ro_disk.request(VIRTIO_BLK_T_OUT, 0, data=bytes(512))[0] == IOERR
    assert ro_disk.file_bytes() == pattern()


def test_read_only_disk_still_reads(ro_disk):
    assert ro_disk.request(VIRTIO_BLK_T_IN, 2, read_len=512) == (OK, bytes([2]) * 512, 513)


def test_read_only_disk_offers_ro_feature(ro_disk, disk):
    assert ro_disk.driver.device_features() & VIRTIO_BLK_F_RO
    assert not disk.driver.device_features() & VIRTIO_BLK_F_RO


def test_config_space_holds_capacity_seg_max_and_blk_size(disk):
    features = disk.driver.device_features()
    assert features & VIRTIO_BLK_F_SEG_MAX and features & VIRTIO_BLK_F_BLK_SIZE
    config = disk.transport.read(mmio.VIRTIO_MMIO_CONFIG, 24)
    capacity, _, seg_max, _, _, _, blk_size = struct.unpack("<QIIHBBI", config)
    assert (capacity, seg_max, blk_size) == (SECTORS, 254, 512)


def test_capacity_ignores_a_trailing_partial_sector(tmp_path):
    path = tmp_path / "odd.img"
    path.write_bytes(bytes(512 * 3 + 100))
    blk = VirtioBlk(str(path))
    try:
        assert blk.capacity == 3
        assert blk.read_config(0, 8) == struct.pack("<Q", 3)
    finally:
        blk.close()


def test_header_split_across_descriptors_is_understood(disk):
    ring = disk.ring
    header = struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 7)
    data, status = ring.alloc(512), ring.alloc(1)
    used = disk.submit_raw(
        [
            (ring.alloc(5, header[:5]), 5, False),
            (ring.alloc(11, header[5:]), 11, False),
            (data, 512, True),
            (status, 1, True),
        ]
    )
    assert used[1] == 513
    assert disk.memory.read(status, 1)[0] == OK
    assert disk.memory.read(data, 512) == bytes([7]) * 512


def test_header_data_and_status_in_one_writable_buffer_with_data(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 1))
    both = ring.alloc(513)
    disk.submit_raw([(header, 16, False), (both, 513, True)])
    assert disk.memory.read(both, 513) == bytes([1]) * 512 + bytes([OK])


def test_scattered_read_fills_every_segment(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 0))
    segments = [ring.alloc(512) for _ in range(4)]
    status = ring.alloc(1)
    disk.submit_raw([(header, 16, False), *[(s, 512, True) for s in segments], (status, 1, True)])
    assert [disk.memory.read(s, 512)[0] for s in segments] == [0, 1, 2, 3]


def test_request_through_indirect_table(disk):
    ring = disk.ring
    table = ring.alloc(48)
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 9))
    data, status = ring.alloc(512), ring.alloc(1)
    ring.write_desc(table, 0, header, 16, VIRTQ_DESC_F_NEXT, 1)
    ring.write_desc(table, 1, data, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2)
    ring.write_desc(table, 2, status, 1, VIRTQ_DESC_F_WRITE, 0)
    ring.write_desc(ring.desc_addr, 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0)
    ring.publish(0)
    disk.driver.set(mmio.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert ring.used() == [(0, 513)]
    assert disk.memory.read(data, 512) == bytes([9]) * 512


def test_header_too_short_fails_with_ioerr(disk):
    ring = disk.ring
    status = ring.alloc(1, bytes([STATUS_UNTOUCHED]))
    used = disk.submit_raw([(ring.alloc(8), 8, False), (status, 1, True)])
    assert used[1] == 1
    assert disk.memory.read(status, 1)[0] == IOERR


def test_read_into_device_readable_buffer_fails_with_ioerr(disk):
    status, _, _ = disk.request(VIRTIO_BLK_T_IN, 0, data=bytes(512))
    assert status == IOERR


def test_write_from_device_writable_buffer_fails_with_ioerr(disk):
    status, _, _ = disk.request(VIRTIO_BLK_T_OUT, 0, read_len=512)
    assert status == IOERR
    assert disk.file_bytes() == pattern()


def test_buffer_outside_guest_memory_fails_request_with_ioerr(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 0))
    status = ring.alloc(1, bytes([STATUS_UNTOUCHED]))
    disk.submit_raw([(header, 16, False), (MEMORY_SIZE - 256, 512, True), (status, 1, True)])
    assert disk.memory.read(status, 1)[0] == IOERR
    assert not disk.needs_reset


def test_device_keeps_serving_after_a_failed_request(disk):
    assert disk.request(VIRTIO_BLK_T_IN, SECTORS, read_len=512)[0] == IOERR
    assert disk.request(VIRTIO_BLK_T_IN, 0, read_len=512)[0] == OK


def test_status_byte_not_device_writable_needs_reset(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_FLUSH, 0, 0))
    disk.driver.submit([(header, 16, False), (ring.alloc(1), 1, False)])
    assert ring.used() == []
    assert disk.needs_reset
    assert disk.interrupts == 1


def test_status_outside_guest_memory_needs_reset(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_FLUSH, 0, 0))
    disk.driver.submit([(header, 16, False), (MEMORY_SIZE, 1, True)])
    assert disk.needs_reset


def test_descriptor_loop_needs_reset_and_serves_nothing(disk):
    ring = disk.ring
    header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_IN, 0, 0))
    ring.write_desc(ring.desc_addr, 0, header, 16, VIRTQ_DESC_F_NEXT, 1)
    ring.write_desc(ring.desc_addr, 1, ring.alloc(512), 512, VIRTQ_DESC_F_NEXT, 0)
    ring.publish(0)
    disk.driver.set(mmio.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert disk.needs_reset
    assert ring.used() == []


def test_requests_batched_before_one_notify_are_all_served(disk):
    ring = disk.ring
    statuses = []
    for _ in range(4):  # two descriptors each: the 8-entry table holds all four
        header = ring.alloc(16, struct.pack("<IIQ", VIRTIO_BLK_T_FLUSH, 0, 0))
        statuses.append(ring.alloc(1, bytes([STATUS_UNTOUCHED])))
        ring.publish(ring.chain([(header, 16, False), (statuses[-1], 1, True)]))
    disk.driver.set(mmio.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert len(ring.used()) == 4
    assert [disk.memory.read(s, 1)[0] for s in statuses] == [OK] * 4
    assert disk.interrupts == 1


# parse_disk_option


def test_disk_option_plain_path(image):
    assert parse_disk_option(image) == (image, False)


def test_disk_option_read_only(image):
    assert parse_disk_option(f"{image},ro") == (image, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no image path"),
        (",ro", "no image path"),
    ],
)
def test_disk_option_errors_are_one_line(text, message):
    with pytest.raises(PyvmmError, match=message) as info:
        parse_disk_option(text)
    assert "\n" not in str(info.value)


def test_disk_option_unknown_flag(image):
    with pytest.raises(PyvmmError, match="unknown option 'rx'"):
        parse_disk_option(f"{image},rx")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nonexistent/disk.img", "does not exist"),
        ("/dev/null", "is a character device, not a regular file or a block device"),
        ("/tmp", "is a directory"),
    ],
)
def test_what_cannot_be_a_disk_is_refused_in_one_line(path, message):
    with pytest.raises(PyvmmError, match=message) as info:
        VirtioBlk(path)
    assert "\n" not in str(info.value)


def test_image_that_cannot_be_written_needs_ro(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    with immutable(path):
        with pytest.raises(
            PyvmmError, match=f"not writable .*: attach it read-only with --disk {path},ro"
        ):
            VirtioBlk(str(path))
        blk = VirtioBlk(str(path), readonly=True)
        assert blk.capacity == 8 and blk.features & VIRTIO_BLK_F_RO
        blk.close()


# Hostile drivers through the whole device: random chains of random buffers.

QUEUE_SIZE = 8
INDIRECT_TABLE = 0x8000
ZONE = (0x10000, MEMORY_SIZE + 0x800)  # buffers here, some past the end of guest memory

# Buffers never overlap the rings, so what the device writes cannot rewrite the chains.
HEADER_SPOTS = [ZONE[0] + 0x1000 * i for i in range(4)]  # where plausible headers lie
addresses = st.one_of(
    st.sampled_from(HEADER_SPOTS),
    st.integers(*ZONE),
    st.just(INDIRECT_TABLE),
    st.integers(MEMORY_SIZE, 2**64 - 1),
)
NEXT, WRITE = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
# Each field is either plausible (so that whole requests do get served) or anything at all.
lengths = st.one_of(st.sampled_from([16, 512, 1, 1024, 513]), st.integers(0, 2**32 - 1))
flags = st.one_of(
    st.sampled_from([NEXT, NEXT | WRITE, WRITE, WRITE, VIRTQ_DESC_F_INDIRECT]),
    st.integers(0, 0xFFFF),
)
nexts = st.one_of(st.integers(0, QUEUE_SIZE - 1), st.integers(0, 0xFFFF))
descriptors = st.tuples(addresses, lengths, flags, nexts)
headers = st.tuples(st.sampled_from([0, 1, 4, 8, 11]), st.just(0), st.integers(0, SECTORS + 2))


def writable_ranges(memory: GuestMemory, table: int, count: int, top: bool = True) -> list[range]:
    """Every byte a device may write: the device-writable buffers of a descriptor table
    and of the indirect tables it points to, one level down only (an indirect table
    may not hold another, virtio 1.2 2.7.5.3.1, and one may point at itself)."""
    ranges = []
    for i in range(count):
        addr, length, flags, _ = struct.unpack("<QIHH", memory.read(table + 16 * i, 16))
        if flags & VIRTQ_DESC_F_INDIRECT:
            if memory.contains(addr, length) and top:
                ranges += writable_ranges(memory, addr, length // 16, top=False)
        elif flags & VIRTQ_DESC_F_WRITE:
            ranges.append(range(addr, addr + length))
    return ranges


def changed_addresses(before: bytes, after: bytes, chunk: int = 4096):
    """Addresses whose byte differs, compared a page at a time to stay fast."""
    for base in range(0, len(before), chunk):
        old, new = before[base : base + chunk], after[base : base + chunk]
        if old != new:
            yield from (base + i for i in range(len(old)) if old[i] != new[i])


def serve_and_check(d: Disk, published: int) -> list[tuple[int, int]]:
    """Notify the device and check what a hostile driver must never achieve: the VMM
    raising, writing outside the device-writable buffers, or a used ring out of step."""
    memory, ring = d.memory, d.ring
    allowed = writable_ranges(memory, ring.desc_addr, QUEUE_SIZE)
    used_ring = range(ring.used_addr, ring.used_addr + 6 + 8 * QUEUE_SIZE)
    size = os.path.getsize(d.path)
    before = memory.read(0, MEMORY_SIZE)

    d.driver.set(mmio.VIRTIO_MMIO_QUEUE_NOTIFY, 0)

    for addr in changed_addresses(before, memory.read(0, MEMORY_SIZE)):
        assert addr in used_ring or any(addr in r for r in allowed), hex(addr)
    used = ring.used()
    assert len(used) <= min(published, QUEUE_SIZE)
    assert all(head < QUEUE_SIZE for head, _ in used)
    if len(used) < min(published, QUEUE_SIZE):
        assert d.needs_reset  # the device stops only by asking for a reset
    assert os.path.getsize(d.path) == size
    event("needs reset" if d.needs_reset else f"{len(used)} served")
    event("some request moved data" if any(n > 1 for _, n in used) else "no data moved")
    return used


@contextlib.contextmanager
def fresh_disk(tmp_path_factory) -> Iterator[Disk]:
    """A new disk per hypothesis example (function fixtures are shared by all examples)."""
    path = tmp_path_factory.mktemp("hostile") / "disk.img"
    path.write_bytes(pattern())
    d = Disk(str(path))
    try:
        yield d
    finally:
        d.close()


@settings(max_examples=200, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.lists(descriptors, min_size=QUEUE_SIZE, max_size=QUEUE_SIZE),
    indirect=st.lists(descriptors, min_size=4, max_size=4),
    heads=st.lists(nexts, min_size=QUEUE_SIZE, max_size=QUEUE_SIZE),
    avail_idx=st.one_of(st.integers(1, QUEUE_SIZE), st.integers(0, 0xFFFF)),
    request_headers=st.lists(headers, min_size=4, max_size=4),
)
def test_random_descriptor_tables_never_crash_and_touch_only_writable_buffers(
    tmp_path_factory, table, indirect, heads, avail_idx, request_headers
):
    with fresh_disk(tmp_path_factory) as d:
        fill_random_tables(d, table, indirect, heads, avail_idx, request_headers)
        serve_and_check(d, avail_idx)


def fill_random_tables(d, table, indirect, heads, avail_idx, request_headers) -> None:
    memory, ring = d.memory, d.ring
    for i, desc in enumerate(table):
        ring.write_desc(ring.desc_addr, i, *desc)
    for i, desc in enumerate(indirect):
        ring.write_desc(INDIRECT_TABLE, i, *desc)
    for spot, header in zip(HEADER_SPOTS, request_headers, strict=True):
        memory.write(spot, struct.pack("<IIQ", *header))
    for i, head in enumerate(heads):
        memory.write_u16(ring.avail_addr + 4 + 2 * i, head)
    memory.write_u16(ring.avail_addr + 2, avail_idx)


requests = st.tuples(
    st.sampled_from(
        [VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, 11]
    ),
    st.integers(0, SECTORS + 1),
    st.sampled_from([0, 20, 512, 1024]),
)
RING_BYTES = 16 * QUEUE_SIZE + 4 + 2 * QUEUE_SIZE  # descriptor table, then available ring


@settings(max_examples=300, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(requests, min_size=1, max_size=2),
    corruptions=st.lists(
        st.tuples(st.integers(0, RING_BYTES - 1), st.integers(0, 255)), max_size=3
    ),
)
def test_corrupted_requests_never_crash_and_touch_only_writable_buffers(
    tmp_path_factory, batch, corruptions
):
    """Well-formed requests with a few bytes of their descriptors or ring flipped."""
    with fresh_disk(tmp_path_factory) as d:
        used, published = corrupt_and_serve(d, batch, corruptions)
    if not corruptions:
        assert len(used) == published == len(batch)


def corrupt_and_serve(d: Disk, batch, corruptions) -> tuple[list[tuple[int, int]], int]:
    memory, ring = d.memory, d.ring
    for kind, sector, length in batch:
        buffers = [(ring.alloc(16, struct.pack("<IIQ", kind, 0, sector)), 16, False)]
        if length:
            buffers.append((ring.alloc(length, b"\x5a" * length), length, kind != VIRTIO_BLK_T_OUT))
        buffers.append((ring.alloc(1, bytes([STATUS_UNTOUCHED])), 1, True))
        ring.publish(ring.chain(buffers))
    for offset, value in corruptions:
        base = ring.desc_addr if offset < 16 * QUEUE_SIZE else ring.avail_addr - 16 * QUEUE_SIZE
        memory.write(base + offset, bytes([value]))
    # A driver that has the device write over its own rings gets what it asked for.
    rings = range(ring.desc_addr, ring.used_addr + 6 + 8 * QUEUE_SIZE)
    writable = writable_ranges(memory, ring.desc_addr, QUEUE_SIZE)
    assume(not any(r.start < rings.stop and rings.start < r.stop for r in writable if r))
    published = memory.read_u16(ring.avail_addr + 2)
    return serve_and_check(d, published), published
