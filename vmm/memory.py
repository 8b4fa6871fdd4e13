"""Guest-physical memory: host mmap regions and bounds-checked access to them.

Every guest-physical address the VMM touches on the guest's behalf (a virtqueue
descriptor, a buffer, a kernel segment) comes from untrusted input, so every access
goes through ``GuestMemory``, which refuses anything not wholly inside one region.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import struct

from vmm.errors import PyvmmError

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class GuestMemoryError(ValueError):
    """A guest-physical access outside guest memory."""


class HostMemoryError(PyvmmError):
    """The host refused to map guest memory (the kernel's overcommit policy said no)."""


def _host_memory() -> int:
    """RAM plus swap: what the kernel's default overcommit heuristic lets one mapping have
    (Documentation/mm/overcommit-accounting.rst, mode 0)."""
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return sum(int(fields[k].split()[0]) << 10 for k in ("MemTotal", "SwapTotal"))


def _mib(n: int) -> str:
    return f"{n >> 20} MiB"


def parse_size(text: str) -> int:
    """Parse a size such as ``64M``, ``1G``, ``512k`` or ``4096`` into bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"bad size {text!r}: expected a number with an optional K, M, G suffix")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


class Region:
    """One contiguous run of guest-physical memory backed by an anonymous host mapping.

    A plain class with __slots__, not a dataclass: importing dataclasses (which imports
    inspect, ast, dis, tokenize) would cost every ``pyvmm boot`` more than the rest of
    this module (docs/bench.md, "Start-up budget")."""

    __slots__ = ("gpa", "size", "mm")

    def __init__(self, gpa: int, size: int, mm: mmap.mmap):
        self.gpa, self.size, self.mm = gpa, size, mm

    @property
    def end(self) -> int:
        return self.gpa + self.size

    @property
    def host_address(self) -> int:
        """Where the region lives in this process (what a KVM memory slot points at)."""
        return ctypes.addressof(ctypes.c_char.from_buffer(self.mm))


class GuestMemory:
    """Guest RAM as a list of regions; the KVM layer maps each region into a memory slot.

    Anonymous private mappings are zero-filled and lazily backed: a 1 GiB guest costs
    host memory only for the pages the guest (or the VMM) actually touches.
    """

    def __init__(self, regions: list[tuple[int, int]]):
        self.regions: list[Region] = []
        for gpa, size in sorted(regions):
            if size <= 0 or size % mmap.PAGESIZE or gpa % mmap.PAGESIZE:
                raise GuestMemoryError(f"region {gpa:#x}+{size:#x} is not page aligned")
            if self.regions and gpa < self.regions[-1].end:
                raise GuestMemoryError(f"region {gpa:#x} overlaps the one before it")
            try:
                mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            except OSError as e:
                self.close()
                total = sum(n for _, n in regions)
                raise HostMemoryError(
                    f"the host cannot map {_mib(total)} of guest memory ({e.strerror}); "
                    f"it has {_mib(_host_memory())} of RAM and swap"
                ) from None
            self.regions.append(Region(gpa, size, mm))

    @classmethod
    def flat(cls, size: int) -> GuestMemory:
        """RAM from address 0 up to ``size`` (the common case for small guests)."""
        return cls([(0, size)])

    @property
    def size(self) -> int:
        return sum(r.size for r in self.regions)

    def _locate(self, gpa: int, size: int) -> tuple[mmap.mmap, int]:
        """Find the region holding all of [gpa, gpa+size) and the offset into it."""
        if gpa >= 0 and size >= 0:
            for r in self.regions:
                if r.gpa <= gpa and gpa + size <= r.end:
                    return r.mm, gpa - r.gpa
        raise GuestMemoryError(f"guest address {gpa:#x}+{size:#x} is outside guest memory")

    def contains(self, gpa: int, size: int = 1) -> bool:
        try:
            self._locate(gpa, size)
        except GuestMemoryError:
            return False
        return True

    def view(self, gpa: int, size: int) -> memoryview:
        """A zero-copy window onto guest memory, for device DMA straight into guest buffers."""
        mm, off = self._locate(gpa, size)
        return memoryview(mm)[off : off + size]

    def read(self, gpa: int, size: int) -> bytes:
        mm, off = self._locate(gpa, size)
        return mm[off : off + size]

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        mm, off = self._locate(gpa, len(data))
        mm[off : off + len(data)] = data

    def read_u16(self, gpa: int) -> int:
        mm, off = self._locate(gpa, 2)
        return struct.unpack_from("<H", mm, off)[0]

    def read_u64(self, gpa: int) -> int:
        mm, off = self._locate(gpa, 8)
        return struct.unpack_from("<Q", mm, off)[0]

    def write_u16(self, gpa: int, value: int) -> None:
        mm, off = self._locate(gpa, 2)
        struct.pack_into("<H", mm, off, value)

    def write_u64(self, gpa: int, value: int) -> None:
        mm, off = self._locate(gpa, 8)
        struct.pack_into("<Q", mm, off, value)

    def touched_bytes(self) -> int:
        """Host memory actually backing guest RAM: the region's pages that are resident
        (or swapped out), from /proc/self/pagemap, one 64-bit entry a page (bit 63
        present, bit 62 swapped; Documentation/admin-guide/mm/pagemap.rst). Per page,
        not per mapping: the kernel may merge a region's mapping with a neighbour's."""
        page = mmap.PAGESIZE
        total = 0
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            for r in self.regions:
                entries = os.pread(f.fileno(), r.size // page * 8, r.host_address // page * 8)
                total += sum(1 for (e,) in struct.iter_unpack("<Q", entries) if e >> 62)
        return total * page

    def close(self) -> None:
        for r in self.regions:
            try:
                r.mm.close()
            except BufferError:
                pass  # a device still holds a view; the mapping goes when the view does
        self.regions = []
