"""The virtio-blk device backend (virtio 1.2 section 5.2) on a raw image file.

It serves requests from one queue and knows nothing of the transport. Data move with
``os.preadv``/``os.pwritev`` straight between the image file and the guest's buffers.

Capacity is the file size in whole 512-byte sectors: a trailing partial sector is not
addressable, so the guest can neither read it nor grow the file by writing to it.

A request is laid out as a 16-byte header the device reads, then the data, then one
status byte the device writes (5.2.6). The device makes no assumption about how the
driver cut that into descriptors (2.7.4), except that the status byte is the last byte
of the last device-writable buffer. A request the device can answer but not serve
gets VIRTIO_BLK_S_IOERR (or _UNSUPP); a request without a writable status byte cannot
even be answered, so the device asks for a reset instead.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence

from vmm.devices.virtio.virtqueue import DescriptorChain, Ring, Virtqueue, VirtqueueError
from vmm.errors import PyvmmError
from vmm.inputfile import NotWritableError, open_input

VIRTIO_ID_BLOCK = 2  # 5: device ID of a block device

# Feature bits (5.2.3).
VIRTIO_BLK_F_SEG_MAX = 1 << 2  # seg_max in config: most data buffers in one request
VIRTIO_BLK_F_RO = 1 << 5  # the device is read-only
VIRTIO_BLK_F_BLK_SIZE = 1 << 6  # blk_size in config
VIRTIO_BLK_F_FLUSH = 1 << 9  # VIRTIO_BLK_T_FLUSH is supported

# Request types and status values (5.2.6).
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
VIRTIO_BLK_ID_BYTES = 20  # 5.2.6: GET_ID's serial, NUL-padded, not NUL-terminated at 20

SECTOR_SIZE = 512  # 5.2.6: "sector" is always 512 bytes, whatever blk_size says
DEFAULT_QUEUE_SIZE = 256

# struct virtio_blk_req's header: type, reserved, sector (5.2.6).
_HEADER = struct.Struct("<IIQ")
# struct virtio_blk_config up to blk_size (5.2.4): capacity, size_max, seg_max,
# geometry (cylinders, heads, sectors), blk_size.
_CONFIG = struct.Struct("<QIIHBBI")


def parse_disk_option(text: str) -> tuple[str, bool]:
    """Parse ``--disk PATH[,ro]`` into (path, readonly); the image is checked when opened."""
    path, *options = text.split(",")
    if not path:
        raise PyvmmError(f"--disk {text!r}: no image path given")
    unknown = [option for option in options if option != "ro"]
    if unknown:
        raise PyvmmError(f"--disk {text!r}: unknown option {unknown[0]!r} (only 'ro' is known)")
    return path, bool(options)


def _split_front(views: list[memoryview], n: int) -> tuple[bytes | None, list[memoryview]]:
    """The first n bytes of a buffer list (None if it is shorter) and the views after them."""
    taken = bytearray()
    for i, view in enumerate(views):
        if len(taken) == n:
            return bytes(taken), views[i:]
        part = view[: n - len(taken)]
        taken += part
        if len(part) < len(view):
            return bytes(taken), [view[len(part) :], *views[i + 1 :]]
    return (bytes(taken) if len(taken) == n else None), []


class VirtioBlk:
    """A block device backed by a raw image file, one request queue."""

    device_id = VIRTIO_ID_BLOCK

    def __init__(
        self,
        path: str,
        readonly: bool = False,
        serial: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        # An image the user may not write is refused, not quietly attached read-only:
        # a guest that believes it wrote would lose its data. ",ro" says it is meant.
        try:
            self._fd = open_input(path, "disk image", writable=not readonly, block_device_ok=True)
        except NotWritableError as e:
            raise NotWritableError(f"{e}: attach it read-only with --disk {path},ro") from None
        self.path = path
        self.readonly = readonly
        self.requests = 0  # served since the disk was attached, for --stats
        # lseek, not st_size, which is 0 for a block device.
        self.capacity = os.lseek(self._fd, 0, os.SEEK_END) // SECTOR_SIZE
        # The serial defaults to the image's file name, so a guest can tell disks apart.
        name = (serial if serial is not None else os.path.basename(path)).encode()
        self.serial = name[:VIRTIO_BLK_ID_BYTES].ljust(VIRTIO_BLK_ID_BYTES, b"\0")
        self.queue_max_sizes = (queue_size,)
        # Header and status take two descriptors of a chain no longer than the queue.
        self.seg_max = queue_size - 2
        self.features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH
        if readonly:
            self.features |= VIRTIO_BLK_F_RO
        self._config = _CONFIG.pack(self.capacity, 0, self.seg_max, 0, 0, 0, SECTOR_SIZE)

    def close(self) -> None:
        os.close(self._fd)

    # The VirtioDevice interface.

    def read_config(self, offset: int, size: int) -> bytes:
        return self._config[offset : offset + size].ljust(size, b"\0")

    def write_config(self, offset: int, data: bytes) -> None:
        """Every field offered is read-only (5.2.4); writes are ignored."""

    def activate(self, features: int, rings: Sequence[Ring]) -> None:
        """Nothing to set up: requests are served synchronously from ``process``."""

    def reset(self) -> None:
        """No state outlives a request, and writes are in the file once pwritev returns."""

    def process(self, queue_index: int, queue: Virtqueue) -> bool:
        while (chain := queue.pop()) is not None:
            queue.add_used(chain.head, self._serve(chain))
            self.requests += 1
        return False

    # Requests.

    def _serve(self, chain: DescriptorChain) -> int:
        """Serve one request and write its status; return the bytes written to the guest."""
        writable = chain.writable
        if not writable or not len(writable[-1]):
            raise VirtqueueError(f"request {chain.head} has no device-writable status byte")
        status_buffer = writable[-1]
        data_in = writable[:-1]
        if len(status_buffer) > 1:
            data_in.append(status_buffer[:-1])
        status, written = self._execute(chain, data_in)
        status_buffer[-1] = status
        return written + 1

    def _execute(self, chain: DescriptorChain, data_in: list[memoryview]) -> tuple[int, int]:
        """(status, bytes written into data_in) for one request."""
        if chain.fault:
            return VIRTIO_BLK_S_IOERR, 0
        header, data_out = _split_front(chain.readable, _HEADER.size)
        if header is None:
            return VIRTIO_BLK_S_IOERR, 0
        kind, _, sector = _HEADER.unpack(header)
        if kind == VIRTIO_BLK_T_IN:
            if any(data_out):  # data to read must be device-writable
                return VIRTIO_BLK_S_IOERR, 0
            return self._transfer(sector, data_in, os.preadv)
        if kind == VIRTIO_BLK_T_OUT:
            if self.readonly or any(data_in):  # data to write must be device-readable
                return VIRTIO_BLK_S_IOERR, 0
            status, _ = self._transfer(sector, data_out, os.pwritev)
            return status, 0
        if kind == VIRTIO_BLK_T_FLUSH:
            try:
                os.fsync(self._fd)
            except OSError:
                return VIRTIO_BLK_S_IOERR, 0
            return VIRTIO_BLK_S_OK, 0
        if kind == VIRTIO_BLK_T_GET_ID:
            written = 0
            for view in data_in:
                part = self.serial[written : written + len(view)]
                view[: len(part)] = part
                written += len(part)
            return VIRTIO_BLK_S_OK, written
        return VIRTIO_BLK_S_UNSUPP, 0

    def _transfer(
        self, sector: int, views: list[memoryview], move: Callable[[int, list, int], int]
    ) -> tuple[int, int]:
        """Move whole sectors between the file and guest buffers with preadv or pwritev."""
        length = sum(len(view) for view in views)
        if length % SECTOR_SIZE or sector + length // SECTOR_SIZE > self.capacity:
            return VIRTIO_BLK_S_IOERR, 0
        if not length:
            return VIRTIO_BLK_S_OK, 0
        try:
            done = move(self._fd, views, sector * SECTOR_SIZE)
        except OSError:
            return VIRTIO_BLK_S_IOERR, 0
        return (VIRTIO_BLK_S_OK if done == length else VIRTIO_BLK_S_IOERR), done
