"""vhost-net: the host kernel as a virtio-net card's data plane, QEMU's ``vhost=on``.

Without it a frame crosses pyvmm's Python (vmm/devices/virtio/net.py: a ``writev`` or
``readv`` per frame on the I/O thread). With it the host kernel's vhost-net driver
(drivers/vhost/net.c) walks the card's virtqueues itself, in a kernel thread, and moves
frames between them and the TAP; pyvmm only sets it up:

* open /dev/vhost-net and ``VHOST_SET_OWNER`` (the kernel thread works for this process,
  in its memory);
* on the driver's DRIVER_OK: ``VHOST_SET_FEATURES`` (what the driver accepted, of what
  vhost knows), ``VHOST_SET_MEM_TABLE`` (guest-physical to this process's addresses, one
  entry per RAM region), and per queue its size, its start (0: fresh rings), its three
  parts' addresses in this process, a *kick* eventfd (KVM's ioeventfd on QueueNotify with
  the queue's index as datamatch: the guest's notify never exits) and a *call* eventfd;
  then ``VHOST_NET_SET_BACKEND`` with the TAP's fd, and frames flow;
* on reset, ``VHOST_NET_SET_BACKEND`` with -1: the kernel lets go of the rings.

The call eventfd is not KVM's irqfd: virtio-mmio's driver reads InterruptStatus to learn
why it was interrupted, so pyvmm's I/O thread takes the call, sets the used-buffer bit and
raises the card's irqfd (QEMU does the same for a transport whose interrupt has a status
register). The TAP keeps its 12-byte vnet header (vmm/hostnet/tap.py): without
VHOST_NET_F_VIRTIO_NET_HDR, vhost passes the driver's header through to the TAP as is.

The ioctl numbers and layouts are include/uapi/linux/vhost.h's and vhost_types.h's;
tests/test_vhost.py compiles the header and compares.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Sequence

from vmm.devices.virtio.virtqueue import Ring
from vmm.errors import PyvmmError
from vmm.memory import GuestMemory

VHOST_NET_DEVICE = "/dev/vhost-net"
# include/uapi/linux/vhost.h: _IO*(VHOST_VIRTIO = 0xAF, n, type).
VHOST_GET_FEATURES = 0x8008AF00  # _IOR(0xAF, 0x00, __u64)
VHOST_SET_FEATURES = 0x4008AF00  # _IOW(0xAF, 0x00, __u64)
VHOST_SET_OWNER = 0xAF01  # _IO(0xAF, 0x01)
VHOST_SET_MEM_TABLE = 0x4008AF03  # _IOW(0xAF, 0x03, struct vhost_memory)
VHOST_SET_VRING_NUM = 0x4008AF10  # _IOW(0xAF, 0x10, struct vhost_vring_state)
VHOST_SET_VRING_ADDR = 0x4028AF11  # _IOW(0xAF, 0x11, struct vhost_vring_addr)
VHOST_SET_VRING_BASE = 0x4008AF12  # _IOW(0xAF, 0x12, struct vhost_vring_state)
VHOST_SET_VRING_KICK = 0x4008AF20  # _IOW(0xAF, 0x20, struct vhost_vring_file)
VHOST_SET_VRING_CALL = 0x4008AF21  # _IOW(0xAF, 0x21, struct vhost_vring_file)
VHOST_NET_SET_BACKEND = 0x4008AF30  # _IOW(0xAF, 0x30, struct vhost_vring_file)
# include/uapi/linux/vhost_types.h.
_U64 = struct.Struct("=Q")
_VRING_STATE = struct.Struct("=II")  # struct vhost_vring_state: index, num
_VRING_FILE = struct.Struct("=Ii")  # struct vhost_vring_file: index, fd (-1: none)
_VRING_ADDR = struct.Struct("=IIQQQQ")  # index, flags, desc, used, avail, log addresses
_MEMORY = struct.Struct("=II")  # struct vhost_memory: nregions, padding; then the regions
_MEMORY_REGION = struct.Struct("=QQQQ")  # guest_phys_addr, memory_size, userspace_addr, pad
# The split ring's three parts (virtio 1.2, 2.7): their sizes for a queue of ``num``.
DESC_SIZE, AVAIL_SIZE, USED_SIZE = 16, 6, 6  # per descriptor; the rings' fixed parts
AVAIL_ENTRY, USED_ENTRY = 2, 8


class VhostError(PyvmmError):
    """vhost-net cannot be used here; the message says why."""


class VhostNet:
    """One /dev/vhost-net instance serving one card's queues from one TAP."""

    def __init__(self, tap_fd: int, memory: GuestMemory, queues: int = 2) -> None:
        try:
            self.fd = os.open(VHOST_NET_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            why = "no vhost_net driver in the host's kernel" if e.errno == errno.ENOENT else ""
            raise VhostError(
                f"--net ...,vhost=on: cannot open {VHOST_NET_DEVICE}: {e.strerror}"
                + (f" ({why})" if why else "")
            ) from None
        self.tap_fd = tap_fd
        self.memory = memory
        self.kick_fds: list[int] = []
        self.call_fds: Sequence[int] = ()  # set by the machine: eventfds its I/O thread reads
        self._running = False
        try:
            fcntl.ioctl(self.fd, VHOST_SET_OWNER)
            out = bytearray(_U64.size)
            fcntl.ioctl(self.fd, VHOST_GET_FEATURES, out)
            self.features = _U64.unpack(out)[0]
            self.kick_fds = [os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK) for _ in range(queues)]
        except BaseException:
            self.close()
            raise

    def start(self, features: int, rings: Sequence[Ring]) -> None:
        """Hand the rings to the kernel; GuestMemoryError if a ring is not all in RAM."""
        addresses = [self._ring_addresses(ring) for ring in rings]
        fcntl.ioctl(self.fd, VHOST_SET_FEATURES, _U64.pack(features & self.features))
        table = _MEMORY.pack(len(self.memory.regions), 0) + b"".join(
            _MEMORY_REGION.pack(r.gpa, r.size, r.host_address, 0) for r in self.memory.regions
        )
        fcntl.ioctl(self.fd, VHOST_SET_MEM_TABLE, table)
        for index, (ring, (desc, avail, used)) in enumerate(zip(rings, addresses, strict=True)):
            kick, call = self.kick_fds[index], self.call_fds[index]
            for request, arg in (
                (VHOST_SET_VRING_NUM, _VRING_STATE.pack(index, ring.num)),
                (VHOST_SET_VRING_BASE, _VRING_STATE.pack(index, 0)),
                (VHOST_SET_VRING_ADDR, _VRING_ADDR.pack(index, 0, desc, used, avail, 0)),
                (VHOST_SET_VRING_KICK, _VRING_FILE.pack(index, kick)),
                (VHOST_SET_VRING_CALL, _VRING_FILE.pack(index, call)),
            ):
                fcntl.ioctl(self.fd, request, arg)
        for index in range(len(rings)):
            fcntl.ioctl(self.fd, VHOST_NET_SET_BACKEND, _VRING_FILE.pack(index, self.tap_fd))
        self._running = True

    def _ring_addresses(self, ring: Ring) -> tuple[int, int, int]:
        """The ring's three parts in this process, each checked to lie in guest RAM."""
        return (
            self.memory.host_address(ring.desc, DESC_SIZE * ring.num),
            self.memory.host_address(ring.driver, AVAIL_SIZE + AVAIL_ENTRY * ring.num),
            self.memory.host_address(ring.device, USED_SIZE + USED_ENTRY * ring.num),
        )

    def stop(self) -> None:
        """Take the TAP away from the rings: the kernel stops touching guest memory."""
        if self._running:
            for index in range(len(self.kick_fds)):
                fcntl.ioctl(self.fd, VHOST_NET_SET_BACKEND, _VRING_FILE.pack(index, -1))
            self._running = False

    def close(self) -> None:
        for fd in self.kick_fds:
            os.close(fd)
        self.kick_fds = []
        os.close(self.fd)
