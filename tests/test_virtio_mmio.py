"""The virtio-mmio transport, driven through its registers as a guest driver would."""

from __future__ import annotations

import struct
import threading
import time

import pytest
from virtio_driver import BlkDriver, BlkRig

from vmm.devices.virtio import mmio
from vmm.devices.virtio.blk import VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_T_IN, VirtioBlk
from vmm.devices.virtio.virtqueue import VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT
from vmm.memory import GuestMemory
from vmm.vm.bus import Bus

S = mmio  # register and bit names read as in the spec: S.VIRTIO_MMIO_STATUS


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * 64)  # 32 sectors
    return str(path)


@pytest.fixture
def machine(image):
    m = BlkRig(image)
    yield m
    m.close()


def test_identification_registers(machine):
    d = machine.driver
    assert d.reg(S.VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976
    assert d.reg(S.VIRTIO_MMIO_VERSION) == 2
    assert d.reg(S.VIRTIO_MMIO_DEVICE_ID) == 2
    assert d.reg(S.VIRTIO_MMIO_VENDOR_ID) == S.PYVMM_VENDOR_ID


def test_window_sits_on_the_mmio_bus(machine):
    bus = Bus("mmio")
    bus.insert(machine.transport, 0xD000_0000, S.VIRTIO_MMIO_WINDOW_SIZE)
    assert bus.read(0xD000_0000, 4) == b"virt"
    assert bus.read(0xD000_0100, 8) == struct.pack("<Q", 32)  # capacity
    assert bus.find(0xD000_0000 + S.VIRTIO_MMIO_WINDOW_SIZE) is None


def test_device_features_offer_version_1_and_device_bits(machine):
    features = machine.driver.device_features()
    assert features & S.VIRTIO_F_VERSION_1
    assert features & S.VIRTIO_F_INDIRECT_DESC
    assert features & VIRTIO_BLK_F_FLUSH


def test_features_without_version_1_are_refused(machine):
    status = machine.driver.negotiate(VIRTIO_BLK_F_FLUSH)
    assert not status & S.VIRTIO_CONFIG_S_FEATURES_OK


def test_features_not_offered_are_refused(machine):
    status = machine.driver.negotiate(S.VIRTIO_F_VERSION_1 | 1 << 29)
    assert not status & S.VIRTIO_CONFIG_S_FEATURES_OK


def test_offered_features_are_accepted(machine):
    d = machine.driver
    assert d.negotiate() & S.VIRTIO_CONFIG_S_FEATURES_OK
    assert machine.transport.driver_features == d.device_features()


def test_driver_features_are_frozen_after_features_ok(machine):
    d = machine.driver
    d.negotiate(S.VIRTIO_F_VERSION_1)
    d.set(S.VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0)
    d.set(S.VIRTIO_MMIO_DRIVER_FEATURES, VIRTIO_BLK_F_FLUSH)
    assert machine.transport.driver_features == S.VIRTIO_F_VERSION_1


def test_driver_ok_without_features_ok_does_not_start_device(machine):
    d = machine.driver
    d.set(S.VIRTIO_MMIO_STATUS, S.VIRTIO_CONFIG_S_ACKNOWLEDGE | S.VIRTIO_CONFIG_S_DRIVER)
    d.add_status(S.VIRTIO_CONFIG_S_DRIVER_OK)
    assert not d.status & S.VIRTIO_CONFIG_S_DRIVER_OK


def test_driver_cannot_clear_a_status_bit_except_by_reset(machine):
    d = machine.driver
    d.bring_up()
    d.set(S.VIRTIO_MMIO_STATUS, S.VIRTIO_CONFIG_S_ACKNOWLEDGE)
    assert d.status & S.VIRTIO_CONFIG_S_DRIVER_OK


def test_writing_zero_to_status_resets_device(machine):
    d = machine.driver
    d.bring_up()
    d.request(VIRTIO_BLK_T_IN, 0, read_len=512)
    d.set(S.VIRTIO_MMIO_STATUS, 0)
    assert d.status == 0
    assert d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS) == 0
    assert machine.transport.driver_features == 0
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 0)
    assert d.reg(S.VIRTIO_MMIO_QUEUE_READY) == 0


def test_device_works_again_after_reset(machine):
    d = machine.driver
    d.bring_up()
    d.set(S.VIRTIO_MMIO_STATUS, 0)
    d.ring = BlkDriver(machine.transport, machine.memory).ring
    d.bring_up()
    status, data, _ = d.request(VIRTIO_BLK_T_IN, 1, read_len=512)
    assert (status, data) == (0, bytes(range(256)) * 2)


def test_queue_num_max_is_zero_for_missing_queue(machine):
    d = machine.driver
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 0)
    assert d.reg(S.VIRTIO_MMIO_QUEUE_NUM_MAX) == 256
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 1)
    assert d.reg(S.VIRTIO_MMIO_QUEUE_NUM_MAX) == 0


def test_queue_ready_reads_back_and_can_be_cleared(machine):
    d = machine.driver
    d.negotiate()
    d.setup_queue()
    assert d.reg(S.VIRTIO_MMIO_QUEUE_READY) == 1
    d.set(S.VIRTIO_MMIO_QUEUE_READY, 0)
    assert d.reg(S.VIRTIO_MMIO_QUEUE_READY) == 0


def test_queue_registers_are_ignored_while_queue_is_ready(machine):
    d = machine.driver
    d.bring_up()
    d.set(S.VIRTIO_MMIO_QUEUE_DESC_LOW, 0x3000)
    status, _, _ = d.request(VIRTIO_BLK_T_IN, 0, read_len=512)
    assert status == 0


def test_queue_addresses_take_high_halves(machine):
    d = machine.driver
    d.negotiate()
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 0)
    d.set(S.VIRTIO_MMIO_QUEUE_NUM, 8)
    d.set(S.VIRTIO_MMIO_QUEUE_DESC_HIGH, 1)  # 4 GiB up: outside this guest's memory
    d.set(S.VIRTIO_MMIO_QUEUE_READY, 1)
    assert d.reg(S.VIRTIO_MMIO_QUEUE_READY) == 0
    assert d.status & S.VIRTIO_CONFIG_S_NEEDS_RESET


def test_queue_size_above_maximum_needs_reset(machine):
    d = machine.driver
    d.negotiate()
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 0)
    d.set(S.VIRTIO_MMIO_QUEUE_NUM, 512)
    d.set(S.VIRTIO_MMIO_QUEUE_READY, 1)
    assert d.status & S.VIRTIO_CONFIG_S_NEEDS_RESET


def test_used_buffer_raises_interrupt_and_ack_clears_it(machine):
    d = machine.driver
    d.bring_up()
    d.request(VIRTIO_BLK_T_IN, 0, read_len=512)
    assert machine.interrupts == 1
    assert d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS) == S.VIRTIO_MMIO_INT_VRING
    d.set(S.VIRTIO_MMIO_INTERRUPT_ACK, S.VIRTIO_MMIO_INT_VRING)
    assert d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS) == 0


def test_no_interrupt_flag_suppresses_interrupt(machine):
    d = machine.driver
    d.bring_up()
    machine.memory.write_u16(d.ring.avail_addr, VIRTQ_AVAIL_F_NO_INTERRUPT)
    status, _, _ = d.request(VIRTIO_BLK_T_IN, 0, read_len=512)
    assert status == 0
    assert machine.interrupts == 0


def test_notify_before_driver_ok_is_ignored(machine):
    d = machine.driver
    d.negotiate()
    d.setup_queue()
    ring = d.ring
    ring.publish(ring.chain([(ring.alloc(16), 16, False), (ring.alloc(1), 1, True)]))
    d.set(S.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert ring.used() == []


def test_notify_of_missing_queue_is_ignored(machine):
    machine.driver.bring_up()
    machine.transport.notify(5)
    assert machine.interrupts == 0


def test_broken_ring_sets_needs_reset_with_config_interrupt(machine):
    d = machine.driver
    d.bring_up()
    ring = d.ring
    ring.write_desc(ring.desc_addr, 0, ring.alloc(16), 16, VIRTQ_DESC_F_NEXT, 0)  # a loop
    ring.publish(0)
    d.set(S.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert d.status & S.VIRTIO_CONFIG_S_NEEDS_RESET
    assert d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS) & S.VIRTIO_MMIO_INT_CONFIG
    assert machine.interrupts == 1
    # Until reset, the device serves nothing.
    ring.publish(ring.chain([(ring.alloc(16), 16, False), (ring.alloc(1), 1, True)]))
    d.set(S.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert ring.used() == []
    d.set(S.VIRTIO_MMIO_STATUS, 0)
    assert d.status == 0


def test_needs_reset_stays_set_when_driver_writes_status(machine):
    d = machine.driver
    d.negotiate()
    d.set(S.VIRTIO_MMIO_QUEUE_SEL, 0)
    d.set(S.VIRTIO_MMIO_QUEUE_NUM, 3)
    d.set(S.VIRTIO_MMIO_QUEUE_READY, 1)
    d.add_status(S.VIRTIO_CONFIG_S_DRIVER_OK)
    assert d.status & S.VIRTIO_CONFIG_S_NEEDS_RESET


def test_failed_status_stops_the_device(machine):
    d = machine.driver
    d.bring_up()
    d.add_status(S.VIRTIO_CONFIG_S_FAILED)
    ring = d.ring
    ring.publish(ring.chain([(ring.alloc(16), 16, False), (ring.alloc(1), 1, True)]))
    d.set(S.VIRTIO_MMIO_QUEUE_NOTIFY, 0)
    assert ring.used() == []


def test_config_space_reads_device_config(machine):
    d = machine.driver
    assert d.reg(S.VIRTIO_MMIO_CONFIG) == 32  # capacity, low half
    assert machine.transport.read(S.VIRTIO_MMIO_CONFIG, 8) == struct.pack("<Q", 32)
    assert machine.transport.read(S.VIRTIO_MMIO_CONFIG + 0xF0, 4) == bytes(4)


def test_config_change_bumps_generation_and_interrupts(machine):
    d = machine.driver
    d.bring_up()
    before = d.reg(S.VIRTIO_MMIO_CONFIG_GENERATION)
    machine.transport.config_changed()
    assert d.reg(S.VIRTIO_MMIO_CONFIG_GENERATION) == before + 1
    assert d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS) == S.VIRTIO_MMIO_INT_CONFIG
    assert machine.interrupts == 1


def test_narrow_register_accesses_are_ignored(machine):
    t = machine.transport
    assert t.read(S.VIRTIO_MMIO_MAGIC_VALUE, 2) == bytes(2)
    assert t.read(S.VIRTIO_MMIO_MAGIC_VALUE + 1, 4) == bytes(4)
    t.write(S.VIRTIO_MMIO_STATUS, b"\x01")
    assert machine.driver.status == 0


def test_write_only_and_reserved_registers_read_zero(machine):
    d = machine.driver
    for offset in (S.VIRTIO_MMIO_QUEUE_NOTIFY, S.VIRTIO_MMIO_QUEUE_DESC_LOW, 0x0F0):
        assert d.reg(offset) == 0


def test_notify_from_io_thread_while_vcpu_reads_registers(machine):
    """The ioeventfd path: an I/O thread calls notify() while the vCPU thread polls."""
    d = machine.driver
    d.bring_up()
    ring = d.ring
    stop = threading.Event()

    def io_thread():
        while not stop.is_set():
            machine.transport.notify(0)

    header, status = ring.alloc(16), ring.alloc(1)
    head = ring.chain([(header, 16, False), (status, 1, True)])
    thread = threading.Thread(target=io_thread)
    thread.start()
    try:
        for _ in range(300):
            ring.publish(head)
            deadline = time.monotonic() + 5
            while not ring.used():
                d.reg(S.VIRTIO_MMIO_INTERRUPT_STATUS)
                assert time.monotonic() < deadline, "the I/O thread never served the request"
            d.set(S.VIRTIO_MMIO_INTERRUPT_ACK, S.VIRTIO_MMIO_INT_VRING)
    finally:
        stop.set()
        thread.join()
    assert ring.used_seen == 300
    assert not d.status & S.VIRTIO_CONFIG_S_NEEDS_RESET


class _Watched(VirtioBlk):
    """A disk that notes when its queue is being served and when its config space is
    touched while that goes on: what two threads at one device would do."""

    def __init__(self, path: str):
        super().__init__(path)
        self.serving = False
        self.overlaps = 0

    def process(self, queue_index, queue) -> None:
        self.serving = True
        time.sleep(0.001)  # a request being served: the GIL is let go, as in a pread
        super().process(queue_index, queue)
        self.serving = False

    def read_config(self, offset: int, size: int) -> bytes:
        self.overlaps += self.serving
        return super().read_config(offset, size)


def test_io_thread_notify_and_vcpu_access_take_the_same_lock(image):
    """With several vCPUs (a concurrent bus) and --ioeventfd, the I/O thread serves the
    queue by calling notify() directly, never through the bus: the transport's own locks
    must be the only ones, or a vCPU's config-space read runs in the middle of a request."""
    memory = GuestMemory.flat(1 << 20)
    disk = _Watched(image)
    transport = mmio.VirtioMmio(disk, memory, lambda: None)
    bus = Bus("MMIO", concurrent=True)
    bus.insert(transport, 0x1000, mmio.VIRTIO_MMIO_WINDOW_SIZE)
    assert bus.find(0x1000)[0] is transport  # no second lock around it
    BlkDriver(transport, memory).bring_up()
    stop = threading.Event()

    def io_thread():
        while not stop.is_set():
            transport.notify(0)

    thread = threading.Thread(target=io_thread)
    thread.start()
    try:
        for _ in range(500):
            bus.read(0x1000 + mmio.VIRTIO_MMIO_CONFIG, 4)  # the capacity, from a vCPU
    finally:
        stop.set()
        thread.join()
        transport.reset()
        disk.close()
        memory.close()
    assert disk.overlaps == 0
