"""The virtio-net device backend (virtio 1.2 section 5.1) on a TAP file descriptor.

Two queues: the driver fills receiveq1 with empty buffers and transmitq1 with frames.
Every frame on either queue starts with a ``struct virtio_net_hdr_v1`` (5.1.6), 12
bytes. The TAP is opened with IFF_VNET_HDR and TUNSETVNETHDRSZ 12, so the host kernel
reads and writes the very same header in front of each frame: a frame the guest sends
goes to the TAP with one ``os.writev`` of the guest's own buffers, and a frame for the
guest comes from the TAP with one ``os.readv`` straight into the guest's buffers. The
device never parses a packet; the checksum and segmentation offloads (CSUM, TSO) are
the host kernel's, switched on toward the guest with TUNSETOFFLOAD for exactly the
features the driver accepted, as QEMU does with a vnet-header TAP.

Receiving is driven by the TAP, not by the driver: the machine's I/O thread calls the
transport's ``notify(RECEIVEQ)`` when the TAP becomes readable (edge-triggered), and
``process`` reads frames until the TAP is empty (then it returns True: it will be
called again when the next frame arrives, and the driver's notifications stay off) or
the buffers run out (then False: the transport turns the driver's notifications on,
and its kick after a refill brings the device back to the frames still waiting).

Descriptors are untrusted. A transmit chain with a bad buffer, device-writable parts,
or a length outside [header + Ethernet header, header + largest frame] is dropped, as a
NIC drops a bad frame. A receive buffer with a bad part comes back with length 0 (the
driver drops it as too short, 5.1.6.4). A frame larger than the buffers meant for it
is read into a scratch area behind them and dropped, never written past a buffer.

With ``vhost`` (vmm/devices/virtio/vhost.py, ``--net ...,vhost=on``) the host kernel serves both
queues instead: the device then only offers features and config space, hands the rings
to vhost on activation and takes them back on reset, and ``process`` does nothing.

Mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF, 5.1.6.3.2): with them a frame may
span several chains, and ``num_buffers`` in the first one's header says how many. The
device gathers chains until they can hold the largest frame, reads the frame across
them, and keeps the chains it did not use for the next frame.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmm.devices.virtio.virtqueue import DescriptorChain, Ring, Virtqueue, VirtqueueError
from vmm.errors import PyvmmError
from vmm.memory import GuestMemoryError

if TYPE_CHECKING:
    from vmm.devices.virtio.vhost import VhostNet

VIRTIO_ID_NET = 1  # 5: device ID of a network card

# Feature bits (5.1.3).
VIRTIO_NET_F_CSUM = 1 << 0  # the device takes frames with a partial checksum
VIRTIO_NET_F_GUEST_CSUM = 1 << 1  # the driver takes frames with a partial checksum
VIRTIO_NET_F_MAC = 1 << 5  # the device has a MAC address in config space
VIRTIO_NET_F_GUEST_TSO4 = 1 << 7  # the driver takes TCPv4 frames larger than the MTU
VIRTIO_NET_F_GUEST_TSO6 = 1 << 8  # ... TCPv6
VIRTIO_NET_F_HOST_TSO4 = 1 << 11  # the device takes TCPv4 frames to segment
VIRTIO_NET_F_HOST_TSO6 = 1 << 12  # ... TCPv6
VIRTIO_NET_F_MRG_RXBUF = 1 << 15  # a received frame may span several buffers (5.1.6.3.2)

# The offloads a vnet-header TAP gives for free: the host kernel does the work.
OFFLOAD_FEATURES = (
    VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6
)  # fmt: skip

# 5.1.2: queue 0 is receiveq1, queue 1 transmitq1 (no control queue: not offered).
RECEIVEQ = 0
TRANSMITQ = 1
DEFAULT_QUEUE_SIZE = 256

# struct virtio_net_hdr_v1 (5.1.6): flags, gso_type, hdr_len, gso_size, csum_start,
# csum_offset, num_buffers. With VIRTIO_F_VERSION_1 it is always 12 bytes, whether or
# not MRG_RXBUF is negotiated (5.1.6.1).
VIRTIO_NET_HDR_SIZE = 12
_NUM_BUFFERS = struct.Struct("<H")
_NUM_BUFFERS_OFFSET = 10
ETH_HLEN = 14  # the smallest Ethernet frame the device passes on: its header
# The largest frame: 1500 bytes of payload, an Ethernet header and a VLAN tag without
# TSO (Linux virtio_net's MAX_PACKET_LEN); with TSO a 64 KiB segment and its headers.
MAX_FRAME = ETH_HLEN + 4 + 1500
MAX_TSO_FRAME = 0x10000 + ETH_HLEN + 4
# A MAC address in the range QEMU's default uses (52:54:00, locally administered).
MAC_PREFIX = bytes.fromhex("525400")


def default_mac(name: str) -> bytes:
    """A MAC address derived from the TAP's name: the same TAP gets the same address on
    every boot (so a guest's neighbours' ARP caches stay right), and two TAPs differ."""
    return MAC_PREFIX + hashlib.sha256(name.encode()).digest()[:3]


@dataclass(frozen=True)
class NetOption:
    """``--net tap=NAME|bridge=NAME[,mac=XX:XX:XX:XX:XX:XX][,offload=off][,vhost=on]``."""

    tap: str | None = None  # an existing TAP to attach to, or one to create
    bridge: str | None = None  # an existing bridge: a new TAP is made and attached to it
    mac: bytes | None = None  # None: derived from the TAP's name
    offload: bool = True  # offer CSUM/TSO and mergeable receive buffers
    vhost: bool = (
        False  # the host kernel's vhost-net as the data plane (vmm/devices/virtio/vhost.py)
    )


def parse_net_option(text: str) -> NetOption:
    """Parse ``--net``; interface names are checked when the TAP is opened."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise PyvmmError(f"--net {text!r}: {part!r} is not KEY=VALUE")
        if key not in ("tap", "bridge", "mac", "offload", "vhost") or key in fields:
            raise PyvmmError(f"--net {text!r}: unknown or repeated option {key!r}")
        fields[key] = value
    if ("tap" in fields) == ("bridge" in fields):
        raise PyvmmError(f"--net {text!r}: give exactly one of tap=NAME and bridge=NAME")
    mac = None
    if "mac" in fields:
        try:
            mac = bytes.fromhex(fields["mac"].replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6 or mac[0] & 1:
            raise PyvmmError(f"--net {text!r}: mac must be 6 bytes, unicast (XX:XX:...)")
    for key in ("offload", "vhost"):
        if fields.get(key, "on") not in ("on", "off"):
            raise PyvmmError(f"--net {text!r}: {key} is on or off")
    return NetOption(
        fields.get("tap"), fields.get("bridge"), mac, fields.get("offload") != "off",
        fields.get("vhost") == "on",
    )  # fmt: skip


def _write_at(views: list[memoryview], offset: int, data: bytes) -> None:
    """Write ``data`` at byte ``offset`` of a buffer list, across buffer boundaries."""
    for view in views:
        if offset < len(view):
            part = data[: len(view) - offset]
            view[offset : offset + len(part)] = part
            data = data[len(part) :]
            offset = 0
            if not data:
                return
        else:
            offset -= len(view)


class VirtioNet:
    """A network card whose wire is a TAP file descriptor (non-blocking, vnet header on).

    ``set_offload(csum, tso4, tso6)`` tells the TAP which offloaded frames the driver
    takes (its TUNSETOFFLOAD); the device touches the TAP through that, reads and writes,
    or, with ``vhost``, leaves the reading and writing to the host kernel.
    """

    device_id = VIRTIO_ID_NET

    def __init__(
        self,
        fd: int,
        mac: bytes,
        set_offload: Callable[[bool, bool, bool], None],
        offload: bool = True,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        vhost: VhostNet | None = None,
    ) -> None:
        self.tap_fd = fd
        self.vhost = vhost
        self.mac = mac
        self._set_offload = set_offload
        self.queue_max_sizes = (queue_size, queue_size)
        self.features = VIRTIO_NET_F_MAC
        if offload:
            self.features |= OFFLOAD_FEATURES | VIRTIO_NET_F_MRG_RXBUF
        if vhost is not None:  # the ring-level features are vhost's to give
            self.features &= ~VIRTIO_NET_F_MRG_RXBUF | vhost.features
        # struct virtio_net_config (5.1.4): mac, then status (not offered: reads 0).
        self._config = mac + bytes(2)
        # Where a frame too large for the buffers given goes, to be dropped.
        self._scratch = memoryview(bytearray(VIRTIO_NET_HDR_SIZE + MAX_TSO_FRAME))
        self.rx_frames = self.tx_frames = self.rx_dropped = self.tx_dropped = 0
        self.reset()

    # The VirtioDevice interface.

    def read_config(self, offset: int, size: int) -> bytes:
        return self._config[offset : offset + size].ljust(size, b"\0")

    def write_config(self, offset: int, data: bytes) -> None:
        """The MAC is read-only with VIRTIO_NET_F_MAC (5.1.4.1); writes are ignored."""

    def activate(self, features: int, rings: Sequence[Ring]) -> None:
        self._mergeable = bool(features & VIRTIO_NET_F_MRG_RXBUF)
        tso4, tso6 = features & VIRTIO_NET_F_GUEST_TSO4, features & VIRTIO_NET_F_GUEST_TSO6
        self._max_frame = VIRTIO_NET_HDR_SIZE + (MAX_TSO_FRAME if tso4 | tso6 else MAX_FRAME)
        self._set_offload(bool(features & VIRTIO_NET_F_GUEST_CSUM), bool(tso4), bool(tso6))
        if self.vhost is not None:
            try:
                self.vhost.start(features, rings)
            except GuestMemoryError as e:
                raise VirtqueueError(f"a ring vhost cannot reach: {e}") from None

    def reset(self) -> None:
        """Forget the receive chains held for the next frame, and stop the host kernel
        sending the guest frames only a driver with offloads could take."""
        self._rx_chains: deque[tuple[DescriptorChain, int]] = deque()  # with their room
        self._rx_room = 0
        self._mergeable = False
        self._max_frame = VIRTIO_NET_HDR_SIZE + MAX_FRAME
        if self.vhost is not None:
            self.vhost.stop()
        self._set_offload(False, False, False)

    def process(self, queue_index: int, queue: Virtqueue) -> bool:
        if self.vhost is not None:  # the host kernel serves the queues; never both
            return True
        if queue_index == RECEIVEQ:
            return self._receive(queue)
        while (chain := queue.pop()) is not None:
            self._transmit(chain)
            queue.add_used(chain.head, 0)
        return False

    # Transmit (5.1.6.2).

    def _transmit(self, chain: DescriptorChain) -> None:
        length = sum(len(view) for view in chain.readable)
        if (
            chain.fault
            or chain.writable
            or not VIRTIO_NET_HDR_SIZE + ETH_HLEN <= length <= VIRTIO_NET_HDR_SIZE + MAX_TSO_FRAME
        ):
            self.tx_dropped += 1
            return
        try:
            os.writev(self.tap_fd, chain.readable)
        except OSError:  # a header the host kernel refuses, a TAP that is down: dropped
            self.tx_dropped += 1
            return
        self.tx_frames += 1

    # Receive (5.1.6.3, 5.1.6.4).

    def _receive(self, queue: Virtqueue) -> bool:
        """Fill receive buffers from the TAP: True when it ran dry, False when the
        buffers ran out first."""
        while True:
            if not self._gather(queue):
                return False
            views = [view for chain, _ in self._rx_chains for view in chain.writable]
            try:
                n = os.readv(self.tap_fd, [*views, self._scratch])
            except BlockingIOError:
                return True
            if n > self._rx_room or n < VIRTIO_NET_HDR_SIZE + ETH_HLEN:
                # Too large for the buffers (the rest went to the scratch area): dropped,
                # and the first chain given back empty, which the driver drops too.
                self.rx_dropped += 1
                n = 0
            else:
                self.rx_frames += 1
            self._complete(queue, n)

    def _gather(self, queue: Virtqueue) -> bool:
        """Hold chains until they can take the largest frame (one chain without mergeable
        buffers: a frame that does not fit is dropped); False if the ring runs out first."""
        while not self._rx_chains or (self._mergeable and self._rx_room < self._max_frame):
            chain = queue.pop()
            if chain is None:
                return False
            if chain.fault or chain.readable:
                queue.add_used(chain.head, 0)  # 5.1.6.3: receive buffers are device-writable
                continue
            room = sum(len(view) for view in chain.writable)
            if room < VIRTIO_NET_HDR_SIZE:
                queue.add_used(chain.head, 0)
                continue
            self._rx_chains.append((chain, room))
            self._rx_room += room
        return True

    def _complete(self, queue: Virtqueue, n: int) -> None:
        """Give back the chains the frame's ``n`` bytes went into (at least one), with
        num_buffers in the first one's header written before any is published (1
        without MRG_RXBUF, as 5.1.6.4 requires; the TAP leaves those two bytes alone);
        the rest stay held."""
        count, left = 0, n
        for _, room in self._rx_chains:
            count += 1
            left -= room
            if left <= 0:
                break
        _write_at(self._rx_chains[0][0].writable, _NUM_BUFFERS_OFFSET, _NUM_BUFFERS.pack(count))
        for _ in range(count):
            chain, room = self._rx_chains.popleft()
            self._rx_room -= room
            queue.add_used(chain.head, min(room, n))
            n -= min(room, n)
