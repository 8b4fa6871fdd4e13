"""Port-I/O and MMIO buses: from an address to the device that owns it.

A device is any object with ``read(offset, size) -> bytes`` and ``write(offset, data)``;
the bus hands it the offset from the start of its range, so a device never knows where
it was placed and never knows about KVM (the same split as Firecracker's ``Bus``).

With several vCPUs, exits arrive on several threads at once, and a device's registers
are read-modify-write state (the UART's divisor latch, a virtqueue's indices): two
accesses to one device must not interleave. A lock per device serializes exactly those,
as a real device answers one bus cycle at a time, while vCPUs touching different devices
go on in parallel. One lock for all devices would make a vCPU printing to the UART wait
for another's disk request to be read from the image, for no reason. Python's GIL does
not do this job: it is released inside a device (a ``pread`` of the disk image), and
even where it is not, a thread can be switched between two bytecodes of one update.
With one vCPU there is nothing to interleave and the bus takes no lock.

A device reached from more than the bus, such as a virtio transport whose queues an I/O
thread serves on an ioeventfd's signal, locks itself (``locks_itself``): the bus's lock
would not be taken on that other path, and a device access from a vCPU would then run
beside a notification from the I/O thread. Such a device is not wrapped: one set of
locks, the device's own, on every path.
"""

from __future__ import annotations

import bisect
import threading

# typing's own constant, without importing typing: a boot does not (vmm/typedtuple.py
# says why); a static type checker takes the name for True and reads the Protocol.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Device(Protocol):
        def read(self, offset: int, size: int) -> bytes: ...

        def write(self, offset: int, data: bytes) -> None: ...


class BusError(ValueError):
    """Two devices claimed overlapping ranges."""


class LockedDevice:
    """A device whose accesses take its own lock (see the module's docstring)."""

    def __init__(self, device: Device):
        self.device = device
        self.lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            return self.device.read(offset, size)

    def write(self, offset: int, data: bytes) -> None:
        with self.lock:
            self.device.write(offset, data)


class Bus:
    """An address space of non-overlapping ranges, each owned by one device.
    ``concurrent``: exits come from several vCPU threads, so each device gets a lock."""

    def __init__(self, name: str, concurrent: bool = False):
        self.name = name
        self.concurrent = concurrent
        self._bases: list[int] = []
        self._entries: list[tuple[int, int, Device]] = []  # (base, end, device)
        # address -> (device, offset, end): a guest touches the same few registers over
        # and over, and a dict hit is several times cheaper than the bisect.
        self._cache: dict[int, tuple[Device, int, int]] = {}

    def insert(self, device: Device, base: int, length: int) -> None:
        end = base + length
        i = bisect.bisect_right(self._bases, base)
        if (i and self._entries[i - 1][1] > base) or (
            i < len(self._entries) and self._entries[i][0] < end
        ):
            raise BusError(f"{self.name} range {base:#x}+{length:#x} overlaps another device")
        if self.concurrent and not getattr(device, "locks_itself", False):
            device = LockedDevice(device)
        self._bases.insert(i, base)
        self._entries.insert(i, (base, end, device))
        self._cache.clear()

    def find(self, addr: int, size: int = 1) -> tuple[Device, int] | None:
        """The device whose range holds [addr, addr+size), and the offset into it."""
        hit = self._cache.get(addr)
        if hit is None:
            i = bisect.bisect_right(self._bases, addr) - 1
            if i < 0:
                return None
            base, end, device = self._entries[i]
            if addr >= end:
                return None
            hit = self._cache[addr] = (device, addr - base, end)
        device, offset, end = hit
        if addr + size > end:
            return None
        return device, offset

    # read and write are every exit's path: the cache is looked at here, without a call
    # to find (a Python call and a tuple cost a few hundred nanoseconds an exit).

    def read(self, addr: int, size: int) -> bytes:
        """Read from a device; unclaimed addresses read as all ones, as on a PC's bus."""
        hit = self._cache.get(addr)
        if hit is not None and addr + size <= hit[2]:
            return hit[0].read(hit[1], size)
        hit = self.find(addr, size)
        if hit is None:
            return b"\xff" * size
        device, offset = hit
        return device.read(offset, size)

    def write(self, addr: int, data: bytes) -> bool:
        """Write to a device; returns False when no device claims the address."""
        hit = self._cache.get(addr)
        if hit is not None and addr + len(data) <= hit[2]:
            hit[0].write(hit[1], data)
            return True
        hit = self.find(addr, len(data))
        if hit is None:
            return False
        device, offset = hit
        device.write(offset, data)
        return True
