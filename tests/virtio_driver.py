"""A virtio driver in miniature, for the tests: it lays out a split virtqueue in real
guest memory and talks to the transport through its registers, as a guest would."""

from __future__ import annotations

import socket
import struct

from vmm.devices.virtio import mmio
from vmm.devices.virtio.blk import VirtioBlk
from vmm.devices.virtio.virtqueue import VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from vmm.memory import GuestMemory

MEMORY_SIZE = 0x40000
DESC_ADDR = 0x1000
DATA_ADDR = 0x10000  # buffers are carved from here up
STATUS_UNTOUCHED = 0xEE  # what a status byte holds before the device writes it

Buffer = tuple[int, int, bool]  # guest address, length, device-writable


class Ring:
    """The driver's half of one split virtqueue."""

    def __init__(
        self,
        memory: GuestMemory,
        size: int = 8,
        desc_addr: int = DESC_ADDR,
        data: tuple[int, int] = (DATA_ADDR, MEMORY_SIZE),
    ):
        self.memory = memory
        self.size = size
        self.desc_addr = desc_addr
        self.avail_addr = desc_addr + 16 * size
        self.used_addr = (self.avail_addr + 6 + 2 * size + 3) & ~3
        self.avail_idx = 0
        self.used_seen = 0
        self._data_start, self._data_end = data
        self._next_free = self._data_start
        self._next_desc = 0

    def alloc(self, size: int, fill: bytes = b"") -> int:
        """Guest memory for a buffer, 16-byte aligned, optionally filled."""
        addr = self._next_free
        self._next_free = (addr + size + 15) & ~15
        if self._next_free > self._data_end:
            self._next_free = self._data_start
            return self.alloc(size, fill)
        self.memory.write(addr, fill.ljust(size, b"\0")[:size])
        return addr

    def write_desc(self, table: int, index: int, addr: int, length: int, flags: int, nxt: int):
        self.memory.write(table + 16 * index, struct.pack("<QIHH", addr, length, flags, nxt))

    def chain(self, buffers: list[Buffer]) -> int:
        """Write a chain of descriptors (taken round-robin from the table); return its head."""
        indices = [(self._next_desc + i) % self.size for i in range(len(buffers))]
        self._next_desc = (self._next_desc + len(buffers)) % self.size
        for n, (index, (addr, length, writable)) in enumerate(zip(indices, buffers, strict=True)):
            last = n == len(buffers) - 1
            flags = (0 if last else VIRTQ_DESC_F_NEXT) | (VIRTQ_DESC_F_WRITE if writable else 0)
            nxt = 0 if last else indices[n + 1]
            self.write_desc(self.desc_addr, index, addr, length, flags, nxt)
        return indices[0]

    def publish(self, head: int) -> None:
        """Put a head on the available ring and move the index past it."""
        slot = self.avail_addr + 4 + 2 * (self.avail_idx % self.size)
        self.memory.write_u16(slot, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.memory.write_u16(self.avail_addr + 2, self.avail_idx)

    def used(self) -> list[tuple[int, int]]:
        """The used elements the device added since the last call."""
        idx = self.memory.read_u16(self.used_addr + 2)
        elements = []
        while self.used_seen != idx:
            slot = self.used_addr + 4 + 8 * (self.used_seen % self.size)
            elements.append(struct.unpack("<II", self.memory.read(slot, 8)))
            self.used_seen = (self.used_seen + 1) & 0xFFFF
        return elements


class MmioDriver:
    """Brings a virtio-mmio device up through its registers, as Linux's virtio_mmio does."""

    def __init__(self, transport: mmio.VirtioMmio, memory: GuestMemory, queue_size: int = 8):
        self.transport = transport
        self.ring = Ring(memory, queue_size)

    def reg(self, offset: int) -> int:
        return int.from_bytes(self.transport.read(offset, 4), "little")

    def set(self, offset: int, value: int) -> None:
        self.transport.write(offset, value.to_bytes(4, "little"))

    def device_features(self) -> int:
        self.set(mmio.VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0)
        low = self.reg(mmio.VIRTIO_MMIO_DEVICE_FEATURES)
        self.set(mmio.VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1)
        return low | self.reg(mmio.VIRTIO_MMIO_DEVICE_FEATURES) << 32

    def negotiate(self, features: int | None = None) -> int:
        """Status ACKNOWLEDGE, DRIVER, the features, FEATURES_OK; returns Status read back."""
        self.set(mmio.VIRTIO_MMIO_STATUS, mmio.VIRTIO_CONFIG_S_ACKNOWLEDGE)
        self.add_status(mmio.VIRTIO_CONFIG_S_DRIVER)
        if features is None:
            features = self.device_features()
        for word in (0, 1):
            self.set(mmio.VIRTIO_MMIO_DRIVER_FEATURES_SEL, word)
            self.set(mmio.VIRTIO_MMIO_DRIVER_FEATURES, (features >> (32 * word)) & 0xFFFFFFFF)
        self.add_status(mmio.VIRTIO_CONFIG_S_FEATURES_OK)
        return self.reg(mmio.VIRTIO_MMIO_STATUS)

    def add_status(self, bit: int) -> None:
        self.set(mmio.VIRTIO_MMIO_STATUS, self.reg(mmio.VIRTIO_MMIO_STATUS) | bit)

    def setup_queue(self, index: int = 0, ring: Ring | None = None) -> None:
        ring = ring or self.ring
        self.set(mmio.VIRTIO_MMIO_QUEUE_SEL, index)
        self.set(mmio.VIRTIO_MMIO_QUEUE_NUM, ring.size)
        for low, addr in (
            (mmio.VIRTIO_MMIO_QUEUE_DESC_LOW, ring.desc_addr),
            (mmio.VIRTIO_MMIO_QUEUE_DRIVER_LOW, ring.avail_addr),
            (mmio.VIRTIO_MMIO_QUEUE_DEVICE_LOW, ring.used_addr),
        ):
            self.set(low, addr & 0xFFFFFFFF)
            self.set(low + 4, addr >> 32)
        self.set(mmio.VIRTIO_MMIO_QUEUE_READY, 1)

    def bring_up(self) -> None:
        """The whole initialisation sequence (3.1.1) with every feature the device offers."""
        assert self.negotiate() & mmio.VIRTIO_CONFIG_S_FEATURES_OK
        self.setup_queue()
        self.add_status(mmio.VIRTIO_CONFIG_S_DRIVER_OK)

    def submit(self, buffers: list[Buffer], index: int = 0, ring: Ring | None = None) -> None:
        ring = ring or self.ring
        ring.publish(ring.chain(buffers))
        self.set(mmio.VIRTIO_MMIO_QUEUE_NOTIFY, index)

    @property
    def status(self) -> int:
        return self.reg(mmio.VIRTIO_MMIO_STATUS)


class BlkDriver(MmioDriver):
    """Block requests as a virtio-blk driver lays them out: header, data, status (5.2.6)."""

    def request(
        self, kind: int, sector: int = 0, data: bytes = b"", read_len: int = 0
    ) -> tuple[int, bytes, int]:
        """Submit one request and return (status, the data read, used length)."""
        ring = self.ring
        header = ring.alloc(16, struct.pack("<IIQ", kind, 0, sector))
        buffers: list[Buffer] = [(header, 16, False)]
        if data:
            buffers.append((ring.alloc(len(data), data), len(data), False))
        if read_len:
            read_addr = ring.alloc(read_len)
            buffers.append((read_addr, read_len, True))
        status = ring.alloc(1, bytes([STATUS_UNTOUCHED]))
        buffers.append((status, 1, True))
        self.submit(buffers)
        used = ring.used()
        assert len(used) == 1, used
        read = ring.memory.read(read_addr, read_len) if read_len else b""
        return ring.memory.read(status, 1)[0], read, used[0][1]


class BlkRig:
    """What the VMM wires up for one disk: guest memory, the device behind its
    transport, an interrupt line that counts, and a driver for it (not yet brought up)."""

    def __init__(self, path: str, readonly: bool = False, serial: str | None = None):
        self.path = path
        self.memory = GuestMemory.flat(MEMORY_SIZE)
        self.interrupts = 0
        self.blk = VirtioBlk(path, readonly=readonly, serial=serial)
        self.transport = mmio.VirtioMmio(self.blk, self.memory, self.raise_interrupt)
        self.driver = BlkDriver(self.transport, self.memory)

    def raise_interrupt(self) -> None:
        self.interrupts += 1

    def close(self) -> None:
        self.transport.reset()
        self.blk.close()
        self.memory.close()


NET_MEMORY_SIZE = 0x100000
NET_RX_DESC, NET_TX_DESC = 0x1000, 0x3000
NET_RX_DATA, NET_TX_DATA = (0x10000, 0x80000), (0x80000, NET_MEMORY_SIZE)


class NetRig:
    """A guest with one virtio-net card whose TAP is one end of a SOCK_SEQPACKET pair:
    a real fd that keeps frame boundaries as a TAP does; ``wire`` is the far end, the
    host's side of the cable. The card is not yet brought up."""

    def __init__(self, offload: bool = True, queue_size: int = 16):
        from vmm.devices.virtio.net import VirtioNet

        self.memory = GuestMemory.flat(NET_MEMORY_SIZE)
        self.interrupts = 0
        self.offloads: list[tuple[bool, bool, bool]] = []  # what TUNSETOFFLOAD was given
        self.tap, self.wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tap.setblocking(False)
        self.net = VirtioNet(
            self.tap.fileno(), bytes.fromhex("525400abcdef"),
            lambda *flags: self.offloads.append(flags), offload, queue_size,
        )  # fmt: skip
        self.transport = mmio.VirtioMmio(self.net, self.memory, self.raise_interrupt)
        self.driver = MmioDriver(self.transport, self.memory)
        self.rx = Ring(self.memory, queue_size, NET_RX_DESC, NET_RX_DATA)
        self.tx = Ring(self.memory, queue_size, NET_TX_DESC, NET_TX_DATA)

    def raise_interrupt(self) -> None:
        self.interrupts += 1

    def bring_up(self, features: int | None = None) -> int:
        """3.1.1 with the features given (default: all offered); returns them."""
        if features is None:
            features = self.driver.device_features()
        assert self.driver.negotiate(features) & mmio.VIRTIO_CONFIG_S_FEATURES_OK
        self.driver.setup_queue(0, self.rx)
        self.driver.setup_queue(1, self.tx)
        self.driver.add_status(mmio.VIRTIO_CONFIG_S_DRIVER_OK)
        return features

    def close(self) -> None:
        self.transport.reset()
        self.tap.close()
        self.wire.close()
        self.memory.close()
