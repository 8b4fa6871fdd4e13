"""Guest-physical memory: host mmap regions and bounds-checked access to them.

Every guest-physical address the VMM touches on the guest's behalf (a virtqueue
descriptor, a buffer, a kernel segment) comes from untrusted input, so every access
goes through ``GuestMemory``, which refuses anything not wholly inside one region.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from vmm.errors import PyvmmError

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
    """Parse a size such as ``64M``, ``1G``, ``2GiB``, ``512k`` or ``4096`` into bytes
    (binary units). By hand rather than with ``re``, which a boot does not otherwise
    import (vmm/typedtuple.py says why that matters)."""
    body = text.strip()
    digits = body[: len(body) - len(body.lstrip("0123456789"))]
    unit = body[len(digits) :].lstrip().lower()
    scale = _SIZE_UNITS.get(unit[:1], 1)
    suffix = unit[1:] if unit[:1] in _SIZE_UNITS else unit
    if not digits or suffix not in ("", "b", "ib"):
        raise ValueError(f"bad size {text!r}: expected a number with an optional K, M, G suffix")
    return int(digits) * scale


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

    def __init__(self, regions: list[tuple[int, int]], file: int | None = None):
        """``file``: a snapshot's memory file (vmm/control/snapshot.py), the regions one after the
        other in it, mapped ``MAP_PRIVATE``: pages are read from it only when touched and
        copied only when written, so clones of one snapshot share what none has written
        (Firecracker maps its memory file the same way)."""
        self.regions: list[Region] = []
        self.file = file
        # Guest pages the VMM may write (device DMA), which KVM's dirty log cannot see:
        # a set of page numbers while a migration records them, else None.
        self.vmm_writes: set[int] | None = None
        offset = 0
        for gpa, size in sorted(regions):
            if size <= 0 or size % mmap.PAGESIZE or gpa % mmap.PAGESIZE:
                raise GuestMemoryError(f"region {gpa:#x}+{size:#x} is not page aligned")
            if self.regions and gpa < self.regions[-1].end:
                raise GuestMemoryError(f"region {gpa:#x} overlaps the one before it")
            try:
                if file is None:
                    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                else:
                    mm = mmap.mmap(file, size, mmap.MAP_PRIVATE, offset=offset)
            except OSError as e:
                self.close()
                total = sum(n for _, n in regions)
                raise HostMemoryError(
                    f"the host cannot map {_mib(total)} of guest memory ({e.strerror}); "
                    f"it has {_mib(_host_memory())} of RAM and swap"
                ) from None
            self.regions.append(Region(gpa, size, mm))
            offset += size

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

    def host_address(self, gpa: int, size: int) -> int:
        """Where [gpa, gpa+size) lives in this process, all of it in one region: for a
        host-kernel data plane (vhost) that reads and writes guest memory itself."""
        mm, off = self._locate(gpa, size)
        return ctypes.addressof(ctypes.c_char.from_buffer(mm)) + off

    def view(self, gpa: int, size: int) -> memoryview:
        """A zero-copy window onto guest memory, for device DMA straight into guest buffers."""
        mm, off = self._locate(gpa, size)
        if self.vmm_writes is not None:
            self._log_vmm_write(gpa, size)
        return memoryview(mm)[off : off + size]

    def _log_vmm_write(self, gpa: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.vmm_writes.update(range(gpa // page, (gpa + max(size, 1) - 1) // page + 1))

    def read(self, gpa: int, size: int) -> bytes:
        mm, off = self._locate(gpa, size)
        return mm[off : off + size]

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        mm, off = self._locate(gpa, len(data))
        if self.vmm_writes is not None:
            self._log_vmm_write(gpa, len(data))
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
        return sum(sum(r) for r in self._resident()) * mmap.PAGESIZE

    def _resident(self) -> list[list[bool]]:
        """For each region, whether each of its pages is resident or swapped out."""
        page = mmap.PAGESIZE
        with open("/proc/self/pagemap", "rb", buffering=0) as f:
            return [
                [e >> 62 != 0 for (e,) in struct.iter_unpack("<Q", os.pread(
                    f.fileno(), r.size // page * 8, r.host_address // page * 8))]
                for r in self.regions
            ]  # fmt: skip

    def data_runs(self) -> list[tuple[Region, list[tuple[int, int]]]]:
        """Each region with the runs of its pages (first, end page numbers) that may hold
        something other than zeros: those ever touched in this process, and those its
        memory file holds. Every other page reads as zero."""
        page, offset, runs = mmap.PAGESIZE, 0, []
        for r, resident in zip(self.regions, self._resident(), strict=True):
            if self.file is not None:
                for start, end in _data_extents(self.file, offset, r.size):
                    resident[start // page : end // page] = [True] * ((end - start) // page)
            runs.append((r, _runs(resident)))
            offset += r.size
        return runs

    def dump(self, fd: int) -> int:
        """Write guest RAM into ``fd``, the regions one after the other, as a sparse file:
        ``data_runs`` written, holes elsewhere. Returns the bytes written."""
        page = mmap.PAGESIZE
        written = offset = 0
        for r, runs in self.data_runs():
            with memoryview(r.mm) as view:
                for first, end in runs:
                    a, b = first * page, end * page
                    os.pwrite(fd, view[a:b], offset + a)
                    written += b - a
            offset += r.size
        os.ftruncate(fd, offset)
        return written

    def close(self) -> None:
        if self.file is not None:
            os.close(self.file)
            self.file = None
        for r in self.regions:
            try:
                r.mm.close()
            except BufferError:
                pass  # a device still holds a view; the mapping goes when the view does
        self.regions = []


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[start, end) of each run of True in ``flags``."""
    runs, start = [], None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(flags)))
    return runs


def _data_extents(fd: int, offset: int, size: int) -> list[tuple[int, int]]:
    """The parts of ``fd``'s [offset, offset+size) that are not holes (SEEK_DATA and
    SEEK_HOLE, lseek(2)), relative to ``offset`` and rounded out to whole pages."""
    page, end, extents, pos = mmap.PAGESIZE, offset + size, [], offset
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        if data >= end:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
        extents.append((data // page * page - offset, -(-hole // page) * page - offset))
        pos = hole
    return extents
