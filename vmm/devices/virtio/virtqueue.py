"""The device side of a split virtqueue (virtio 1.2 section 2.7).

The driver owns the descriptor table and the available ring; the device owns the used
ring. Everything read from the first two is untrusted, and the errors divide by what
the device can still do afterwards:

* The ring itself is broken (the available index jumps by more than the queue size, a
  head or ``next`` index past the table, a chain that loops or is longer than the queue,
  a nested or malformed indirect table): the chain's end, and with it the place to
  report a status, cannot be found. ``pop`` raises ``VirtqueueError`` and the transport
  puts the device in DEVICE_NEEDS_RESET (as QEMU's ``virtio_error`` does).
* One buffer of an otherwise sound chain is bad (outside guest memory, or a
  device-readable buffer after a device-writable one): the chain comes back with
  ``fault`` set, so the device can fail just that request (virtio-blk: IOERR).

Buffers are handed out as memoryviews onto guest memory, so a device reads and writes
guest buffers in place (``os.preadv`` straight into them): no copies on the data path.

VIRTIO_F_EVENT_IDX is not offered: the crude ``VIRTQ_AVAIL_F_NO_INTERRUPT`` flag and
``VIRTQ_USED_F_NO_NOTIFY`` (set while the device is draining the ring, so a driver that
honours it does not exit to the VMM for buffers the device will pick up anyway) are
enough for a device that processes synchronously and drains the whole ring per notify.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmm.memory import GuestMemory, GuestMemoryError

# Descriptor flags (2.7.5, struct virtq_desc).
VIRTQ_DESC_F_NEXT = 1  # the buffer continues via the next field
VIRTQ_DESC_F_WRITE = 2  # device write-only (otherwise device read-only)
VIRTQ_DESC_F_INDIRECT = 4  # the buffer holds a table of descriptors (2.7.5.3)
VIRTQ_AVAIL_F_NO_INTERRUPT = 1  # 2.7.7: the driver does not want used-buffer notifications
VIRTQ_USED_F_NO_NOTIFY = 1  # 2.7.10: the device does not want available-buffer notifications
VIRTQ_MAX_SIZE = 32768  # 2.7: the largest Queue Size, always a power of 2

# Layouts and alignments (2.7, "Virtqueue Part" table; 2.7.5, 2.7.6, 2.7.8).
_DESC = struct.Struct("<QIHH")  # addr, len, flags, next
_DESC_SIZE = _DESC.size
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")  # id, len
_DESC_ALIGN, _AVAIL_ALIGN, _USED_ALIGN = 16, 2, 4
_RING_HEADER = 4  # flags, idx before the ring entries


@dataclass(frozen=True)
class Ring:
    """A split virtqueue as the driver set it up (4.2.2's queue registers): its size and
    its three parts' guest-physical addresses. What a data plane outside pyvmm (vhost)
    needs to serve the queue itself."""

    num: int
    desc: int
    driver: int  # the available ring
    device: int  # the used ring


class VirtqueueError(Exception):
    """The driver broke the virtqueue protocol; the device needs a reset to recover."""


@dataclass(slots=True)
class DescriptorChain:
    """One request: its buffers in chain order, split by the direction the device may use.

    A buffer that could not be mapped stays in its list as an empty view (so the
    positions of the others, like a status byte in the last writable buffer, keep
    their meaning) and ``fault`` says what was wrong.
    """

    head: int
    readable: list[memoryview]
    writable: list[memoryview]
    fault: str | None = None


class Virtqueue:
    """One split virtqueue whose areas the driver placed in guest memory."""

    def __init__(
        self, memory: GuestMemory, size: int, desc_addr: int, avail_addr: int, used_addr: int
    ):
        if not 0 < size <= VIRTQ_MAX_SIZE or size & (size - 1):
            raise VirtqueueError(f"queue size {size} is not a power of 2 up to {VIRTQ_MAX_SIZE}")
        if desc_addr % _DESC_ALIGN or avail_addr % _AVAIL_ALIGN or used_addr % _USED_ALIGN:
            raise VirtqueueError("a virtqueue area is misaligned (2.7: 16, 2 and 4 bytes)")
        try:
            self._desc = memory.view(desc_addr, _DESC_SIZE * size)
            # Both rings with their trailing event fields (used_event, avail_event).
            self._avail = memory.view(avail_addr, _RING_HEADER + 2 * size + 2)
            self._used = memory.view(used_addr, _RING_HEADER + _USED_ELEM.size * size + 2)
        except GuestMemoryError as e:
            raise VirtqueueError(f"virtqueue area outside guest memory: {e}") from e
        self.memory = memory
        self.size = size
        self._last_avail = 0  # free-running 16-bit copies of the two ring indices
        self._used_idx = 0
        self._signalled_idx = 0  # used index the driver was last told about

    def indices(self) -> tuple[int, int, int]:
        """The device's own place in the rings (the next available entry to take, the
        next used entry to fill, the used index last signalled), for a snapshot."""
        return self._last_avail, self._used_idx, self._signalled_idx

    def set_indices(self, last_avail: int, used_idx: int, signalled_idx: int) -> None:
        if any(not 0 <= i <= 0xFFFF for i in (last_avail, used_idx, signalled_idx)):
            raise VirtqueueError("a virtqueue index is not a 16-bit number")
        self._last_avail, self._used_idx, self._signalled_idx = last_avail, used_idx, signalled_idx

    def has_available(self) -> bool:
        return _U16.unpack_from(self._avail, 2)[0] != self._last_avail

    def pop(self) -> DescriptorChain | None:
        """The next chain the driver made available, or None when the ring is empty."""
        avail_idx = _U16.unpack_from(self._avail, 2)[0]
        pending = (avail_idx - self._last_avail) & 0xFFFF
        if not pending:
            return None
        if pending > self.size:
            raise VirtqueueError(
                f"available index moved from {self._last_avail} to {avail_idx}, "
                f"more than the queue size {self.size}"
            )
        slot = _RING_HEADER + 2 * (self._last_avail & (self.size - 1))
        head = _U16.unpack_from(self._avail, slot)[0]
        self._last_avail = (self._last_avail + 1) & 0xFFFF
        return self._walk(head)

    def _walk(self, head: int) -> DescriptorChain:
        """Follow a chain from its head, into at most one indirect table (2.7.5.3)."""
        memory = self.memory
        table, entries, index = self._desc, self.size, head
        in_indirect = False
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        fault = None
        for _ in range(self.size):  # 2.7.5.3.1: no chain is longer than the queue
            if index >= entries:
                raise VirtqueueError(f"descriptor index {index} past a table of {entries}")
            addr, length, flags, index = _DESC.unpack_from(table, _DESC_SIZE * index)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if in_indirect:
                    raise VirtqueueError("an indirect table refers to another indirect table")
                if flags & VIRTQ_DESC_F_NEXT:
                    raise VirtqueueError("a descriptor sets both INDIRECT and NEXT")
                if not length or length % _DESC_SIZE:
                    raise VirtqueueError(f"indirect table length {length} is not n * 16")
                try:
                    table = memory.view(addr, length)
                except GuestMemoryError as e:
                    raise VirtqueueError(f"indirect table outside guest memory: {e}") from e
                entries, index, in_indirect = length // _DESC_SIZE, 0, True
                continue
            try:
                view = memory.view(addr, length)
            except GuestMemoryError as e:
                view, fault = memoryview(b""), fault or str(e)
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append(view)
            elif writable:  # 2.7.4.2: device-writable buffers come last
                fault = fault or "a device-readable buffer follows a device-writable one"
            else:
                readable.append(view)
            if not flags & VIRTQ_DESC_F_NEXT:
                return DescriptorChain(head, readable, writable, fault)
        raise VirtqueueError(f"descriptor chain from {head} is longer than the queue (a loop?)")

    def add_used(self, head: int, length: int) -> None:
        """Return a chain to the driver; ``length`` is the bytes written into its buffers."""
        slot = _RING_HEADER + _USED_ELEM.size * (self._used_idx & (self.size - 1))
        _USED_ELEM.pack_into(self._used, slot, head, length)
        # The element is in place before the index that publishes it (2.7.8.1); x86
        # keeps stores in order, and other hosts' KVM guests see the same mmap.
        self._used_idx = (self._used_idx + 1) & 0xFFFF
        _U16.pack_into(self._used, 2, self._used_idx)

    def needs_interrupt(self) -> bool:
        """Whether used buffers were added since the last call that the driver wants to hear of."""
        if self._used_idx == self._signalled_idx:
            return False
        self._signalled_idx = self._used_idx
        return not _U16.unpack_from(self._avail, 0)[0] & VIRTQ_AVAIL_F_NO_INTERRUPT

    def set_notifications(self, enabled: bool) -> None:
        """Ask the driver to notify (or not) when it makes buffers available (2.7.10)."""
        _U16.pack_into(self._used, 0, 0 if enabled else VIRTQ_USED_F_NO_NOTIFY)

    def release(self) -> None:
        """Drop the views onto guest memory, so that guest memory can be unmapped."""
        for view in (self._desc, self._avail, self._used):
            view.release()
