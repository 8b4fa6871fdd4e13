"""Port-I/O and MMIO buses: from an address to the device that owns it.

A device is any object with ``read(offset, size) -> bytes`` and ``write(offset, data)``;
the bus hands it the offset from the start of its range, so a device never knows where
it was placed and never knows about KVM (the same split as Firecracker's ``Bus``).
"""

from __future__ import annotations

import bisect
from typing import Protocol


class Device(Protocol):
    def read(self, offset: int, size: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...


class BusError(ValueError):
    """Two devices claimed overlapping ranges."""


class Bus:
    """An address space of non-overlapping ranges, each owned by one device."""

    def __init__(self, name: str):
        self.name = name
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

    def read(self, addr: int, size: int) -> bytes:
        """Read from a device; unclaimed addresses read as all ones, as on a PC's bus."""
        hit = self.find(addr, size)
        if hit is None:
            return b"\xff" * size
        device, offset = hit
        return device.read(offset, size)

    def write(self, addr: int, data: bytes) -> bool:
        """Write to a device; returns False when no device claims the address."""
        hit = self.find(addr, len(data))
        if hit is None:
            return False
        device, offset = hit
        device.write(offset, data)
        return True
