"""The virtio-mmio transport, version 2 ("modern", virtio 1.2 section 4.2).

The transport is the register window a driver sees; it negotiates features, runs the
device status state machine (2.1), holds each queue's configuration until the driver
sets QueueReady, and forwards queue notifications and config-space accesses to a
``VirtioDevice`` backend, which knows nothing of MMIO (and the transport nothing of
what the device does).

Interrupts leave through a plain callable: the transport sets a bit in InterruptStatus
and then calls ``interrupt()``, once per event (an edge), outside its locks and on
whichever thread served the queue, so the machine may wire it to an irqfd or pulse
KVM_IRQ_LINE. The driver reads InterruptStatus and acknowledges with InterruptACK.

A queue notification arrives either as a QueueNotify write through ``write`` (the
vCPU's exit loop) or as a direct ``notify(queue)`` call from an I/O thread waiting on
that queue's ioeventfd (registered at base + VIRTIO_MMIO_QUEUE_NOTIFY); both take the
same path. A device that waits on the host rather than on the driver (virtio-net's
receive queue, fed by a TAP) has ``notify`` called for it when the host has something.

Threading: the transport locks itself (``locks_itself``: a bus with several vCPUs adds
no lock of its own, which an I/O thread's ``notify`` would not take). ``_queue_lock``
serialises queue processing (a notify from a vCPU thread and one from an I/O thread,
or a reset during processing) and the device's config space, which a backend may
change as it serves its queues; ``_lock`` guards the registers, so a vCPU reading
InterruptStatus does not wait for a disk request. Lock order is always ``_queue_lock``
then ``_lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vmm.devices.virtio.virtqueue import Ring, Virtqueue, VirtqueueError
from vmm.memory import GuestMemory

VIRTIO_MMIO_WINDOW_SIZE = 0x200  # registers 0x000-0x0ff, device config 0x100-0x1ff

# Register offsets (4.2.2, table "MMIO Device Register Layout").
VIRTIO_MMIO_MAGIC_VALUE = 0x000  # R: "virt"
VIRTIO_MMIO_VERSION = 0x004  # R: 2 for a modern device
VIRTIO_MMIO_DEVICE_ID = 0x008  # R: virtio device type (5, "Device Types")
VIRTIO_MMIO_VENDOR_ID = 0x00C  # R
VIRTIO_MMIO_DEVICE_FEATURES = 0x010  # R: 32 feature bits selected by DeviceFeaturesSel
VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014  # W
VIRTIO_MMIO_DRIVER_FEATURES = 0x020  # W: 32 feature bits selected by DriverFeaturesSel
VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024  # W
VIRTIO_MMIO_QUEUE_SEL = 0x030  # W: the queue the Queue* registers refer to
VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034  # R: 0 when the queue does not exist
VIRTIO_MMIO_QUEUE_NUM = 0x038  # W: queue size the driver chose
VIRTIO_MMIO_QUEUE_READY = 0x044  # RW
VIRTIO_MMIO_QUEUE_NOTIFY = 0x050  # W: index of a queue with new buffers
VIRTIO_MMIO_INTERRUPT_STATUS = 0x060  # R
VIRTIO_MMIO_INTERRUPT_ACK = 0x064  # W: clears the bits written
VIRTIO_MMIO_STATUS = 0x070  # RW: device status (2.1); writing 0 resets
VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080  # W: descriptor area
VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084
VIRTIO_MMIO_QUEUE_DRIVER_LOW = 0x090  # W: driver area (available ring)
VIRTIO_MMIO_QUEUE_DRIVER_HIGH = 0x094
VIRTIO_MMIO_QUEUE_DEVICE_LOW = 0x0A0  # W: device area (used ring)
VIRTIO_MMIO_QUEUE_DEVICE_HIGH = 0x0A4
VIRTIO_MMIO_CONFIG_GENERATION = 0x0FC  # R: changes whenever config space changes (2.5.1)
VIRTIO_MMIO_CONFIG = 0x100  # device-specific configuration space

VIRTIO_MMIO_MAGIC = 0x74726976  # 4.2.2: little-endian "virt"
VIRTIO_MMIO_VERSION_MODERN = 2  # 4.2.2: 1 is the legacy interface (4.2.4)
PYVMM_VENDOR_ID = 0x4D565950  # little-endian "PYVM"; drivers match on device ID only

# InterruptStatus bits (4.2.2).
VIRTIO_MMIO_INT_VRING = 1 << 0  # used buffer notification
VIRTIO_MMIO_INT_CONFIG = 1 << 1  # configuration change notification

# Device status bits (2.1).
VIRTIO_CONFIG_S_ACKNOWLEDGE = 1
VIRTIO_CONFIG_S_DRIVER = 2
VIRTIO_CONFIG_S_DRIVER_OK = 4
VIRTIO_CONFIG_S_FEATURES_OK = 8
VIRTIO_CONFIG_S_NEEDS_RESET = 64
VIRTIO_CONFIG_S_FAILED = 128

# Transport and ring feature bits this transport offers for every device (6).
VIRTIO_F_INDIRECT_DESC = 1 << 28  # 2.7.5.3
VIRTIO_F_VERSION_1 = 1 << 32  # a modern (1.x) device; required of the driver here
TRANSPORT_FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC


class VirtioDevice(Protocol):
    """A device backend: what makes a block device differ from a console."""

    device_id: int  # 5: 2 for a block device
    features: int  # device-type feature bits offered; the transport adds its own
    queue_max_sizes: Sequence[int]  # one entry per queue

    def read_config(self, offset: int, size: int) -> bytes: ...

    def write_config(self, offset: int, data: bytes) -> None: ...

    def activate(self, features: int, rings: Sequence[Ring]) -> None:
        """The driver set DRIVER_OK having accepted ``features``, with its queues set up
        as ``rings`` (a device that serves them outside pyvmm, vhost, needs them);
        VirtqueueError if it cannot serve them (the device then needs a reset)."""

    def process(self, queue_index: int, queue: Virtqueue) -> bool:
        """Serve the available buffers; raise VirtqueueError when a reset is needed.

        True means the device left buffers for later on purpose (a receive queue with no
        frame to fill them): it will come back by itself, so the transport neither turns
        the driver's notifications back on nor looks for more buffers."""

    def reset(self) -> None: ...


@dataclass
class _QueueConfig:
    """A queue's registers as the driver set them, and its Virtqueue once ready."""

    max_size: int
    num: int = 0
    desc: int = 0
    driver: int = 0
    device: int = 0
    virtqueue: Virtqueue | None = None


@dataclass
class QueueState:
    """One queue's registers and, once ready, the device's place in its rings."""

    num: int
    desc: int
    driver: int
    device: int
    ready: bool
    last_avail: int
    used_idx: int
    signalled_idx: int


@dataclass
class VirtioMmioState:
    """The transport as the driver left it, for a snapshot (docs/state.md)."""

    status: int
    interrupt_status: int
    driver_features: int
    device_features_sel: int
    driver_features_sel: int
    queue_sel: int
    config_generation: int
    queues: list[QueueState]


def _set_half(value: int, word: int, high: bool) -> int:
    """Replace the low or high 32 bits of a 64-bit address register pair."""
    if high:
        return (value & 0xFFFFFFFF) | word << 32
    return (value & ~0xFFFFFFFF) | word


class VirtioMmio:
    """One virtio-mmio window, VIRTIO_MMIO_WINDOW_SIZE bytes at any base on the MMIO bus."""

    locks_itself = True  # vmm/vm/bus.py: an I/O thread reaches it by notify, not the bus

    def __init__(
        self, device: VirtioDevice, memory: GuestMemory, interrupt: Callable[[], None]
    ) -> None:
        self.device = device
        self.memory = memory
        self._interrupt = interrupt
        self.device_features = device.features | TRANSPORT_FEATURES
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self.config_generation = 0
        self.notifies = 0  # queue notifications seen, for --stats ("one per request")
        self._init_state()

    def _init_state(self) -> None:
        self.status = 0
        self.interrupt_status = 0
        self.driver_features = 0
        self._device_features_sel = 0
        self._driver_features_sel = 0
        self._queue_sel = 0
        self._queues = [_QueueConfig(size) for size in self.device.queue_max_sizes]

    # The bus interface.

    def read(self, offset: int, size: int) -> bytes:
        if offset >= VIRTIO_MMIO_CONFIG:
            with self._queue_lock:
                return self.device.read_config(offset - VIRTIO_MMIO_CONFIG, size)
        if size != 4 or offset % 4:  # 4.2.2.2: registers take aligned 32-bit accesses only
            return bytes(size)
        with self._lock:
            return self._read_register(offset).to_bytes(4, "little")

    def write(self, offset: int, data: bytes) -> None:
        if offset >= VIRTIO_MMIO_CONFIG:
            with self._queue_lock:
                self.device.write_config(offset - VIRTIO_MMIO_CONFIG, data)
            return
        if len(data) != 4 or offset % 4:
            return
        value = int.from_bytes(data, "little")
        if offset == VIRTIO_MMIO_QUEUE_NOTIFY:
            self.notify(value)
        elif offset == VIRTIO_MMIO_STATUS:
            self._write_status(value)
        elif offset == VIRTIO_MMIO_QUEUE_READY:
            self._write_queue_ready(value)
        else:
            with self._lock:
                self._write_register(offset, value)

    def _read_register(self, offset: int) -> int:
        if offset == VIRTIO_MMIO_MAGIC_VALUE:
            return VIRTIO_MMIO_MAGIC
        if offset == VIRTIO_MMIO_VERSION:
            return VIRTIO_MMIO_VERSION_MODERN
        if offset == VIRTIO_MMIO_DEVICE_ID:
            return self.device.device_id
        if offset == VIRTIO_MMIO_VENDOR_ID:
            return PYVMM_VENDOR_ID
        if offset == VIRTIO_MMIO_DEVICE_FEATURES:
            if self._device_features_sel > 1:
                return 0
            return (self.device_features >> (32 * self._device_features_sel)) & 0xFFFFFFFF
        if offset == VIRTIO_MMIO_QUEUE_NUM_MAX:
            queue = self._selected_queue()
            return queue.max_size if queue else 0
        if offset == VIRTIO_MMIO_QUEUE_READY:
            queue = self._selected_queue()
            return int(bool(queue and queue.virtqueue))
        if offset == VIRTIO_MMIO_INTERRUPT_STATUS:
            return self.interrupt_status
        if offset == VIRTIO_MMIO_STATUS:
            return self.status
        if offset == VIRTIO_MMIO_CONFIG_GENERATION:
            return self.config_generation
        return 0  # write-only and reserved registers

    def _write_register(self, offset: int, value: int) -> None:
        if offset == VIRTIO_MMIO_DEVICE_FEATURES_SEL:
            self._device_features_sel = value
        elif offset == VIRTIO_MMIO_DRIVER_FEATURES_SEL:
            self._driver_features_sel = value
        elif offset == VIRTIO_MMIO_DRIVER_FEATURES:
            # 2.2.2: features are fixed once FEATURES_OK is set; only words 0 and 1 exist.
            if not self.status & VIRTIO_CONFIG_S_FEATURES_OK and self._driver_features_sel < 2:
                high = self._driver_features_sel == 1
                self.driver_features = _set_half(self.driver_features, value, high)
        elif offset == VIRTIO_MMIO_QUEUE_SEL:
            self._queue_sel = value
        elif offset == VIRTIO_MMIO_INTERRUPT_ACK:
            self.interrupt_status &= ~value
        else:
            self._write_queue_register(offset, value)

    def _write_queue_register(self, offset: int, value: int) -> None:
        queue = self._selected_queue()
        if queue is None or queue.virtqueue is not None:  # 4.2.3.2: not while the queue is live
            return
        if offset == VIRTIO_MMIO_QUEUE_NUM:
            queue.num = value
        elif offset in (VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_DESC_HIGH):
            queue.desc = _set_half(queue.desc, value, offset == VIRTIO_MMIO_QUEUE_DESC_HIGH)
        elif offset in (VIRTIO_MMIO_QUEUE_DRIVER_LOW, VIRTIO_MMIO_QUEUE_DRIVER_HIGH):
            high = offset == VIRTIO_MMIO_QUEUE_DRIVER_HIGH
            queue.driver = _set_half(queue.driver, value, high)
        elif offset in (VIRTIO_MMIO_QUEUE_DEVICE_LOW, VIRTIO_MMIO_QUEUE_DEVICE_HIGH):
            high = offset == VIRTIO_MMIO_QUEUE_DEVICE_HIGH
            queue.device = _set_half(queue.device, value, high)

    def _selected_queue(self) -> _QueueConfig | None:
        if self._queue_sel < len(self._queues):
            return self._queues[self._queue_sel]
        return None

    def _write_queue_ready(self, value: int) -> None:
        with self._queue_lock, self._lock:
            queue = self._selected_queue()
            if queue is None:
                return
            if not value:
                if queue.virtqueue is not None:
                    queue.virtqueue.release()
                    queue.virtqueue = None
                return
            if queue.virtqueue is not None:
                return
            try:
                if queue.num > queue.max_size:
                    raise VirtqueueError(f"queue size {queue.num} > maximum {queue.max_size}")
                queue.virtqueue = Virtqueue(
                    self.memory, queue.num, queue.desc, queue.driver, queue.device
                )
            except VirtqueueError:
                raised = self._set_needs_reset()
            else:
                raised = 0
        if raised:
            self._interrupt()

    # Device status (2.1, 3.1.1).

    def _write_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            return
        with self._queue_lock, self._lock:
            old = self.status
            new = (value & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET)
            if old & ~new:  # 2.1.2: the driver never clears a bit, except by reset
                return
            added = new & ~old
            if added & VIRTIO_CONFIG_S_FEATURES_OK and not self._features_acceptable():
                new &= ~VIRTIO_CONFIG_S_FEATURES_OK  # 2.2.2: the driver re-reads and sees it
            if added & VIRTIO_CONFIG_S_DRIVER_OK:
                if new & VIRTIO_CONFIG_S_FEATURES_OK:
                    try:
                        self.device.activate(self.driver_features, self._rings())
                    except VirtqueueError:  # rings it cannot serve: broken until reset
                        new |= VIRTIO_CONFIG_S_NEEDS_RESET
                else:
                    new &= ~VIRTIO_CONFIG_S_DRIVER_OK  # 3.1.1: features come first
            self.status = new

    def _rings(self) -> list[Ring]:
        return [Ring(q.num, q.desc, q.driver, q.device) for q in self._queues]

    def backend_interrupt(self) -> None:
        """A data plane outside pyvmm (vhost) put buffers on a used ring and signalled:
        raise the used-buffer interrupt as ``notify`` would (4.2.2: the driver reads
        InterruptStatus to learn why)."""
        with self._lock:
            self.interrupt_status |= VIRTIO_MMIO_INT_VRING
        self._interrupt()

    def _features_acceptable(self) -> bool:
        """2.2.2: only offered features, and 6.1: a modern device needs VIRTIO_F_VERSION_1."""
        offered = not self.driver_features & ~self.device_features
        return offered and bool(self.driver_features & VIRTIO_F_VERSION_1)

    def reset(self) -> None:
        """Back to the state at power-on (2.4): what the driver does by writing 0 to Status."""
        with self._queue_lock, self._lock:
            for queue in self._queues:
                if queue.virtqueue is not None:
                    queue.virtqueue.release()
            self.device.reset()
            self._init_state()

    def _set_needs_reset(self) -> int:
        """2.1.2: the device is broken until reset; a running driver hears of it as a
        config change. Returns the interrupt bit raised, if any (called with both locks)."""
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET
        if not self.status & VIRTIO_CONFIG_S_DRIVER_OK:
            return 0
        self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG
        return VIRTIO_MMIO_INT_CONFIG

    # Snapshots.

    def drain(self) -> None:
        """Serve every buffer the driver has made available, so that no request is half
        done when the state is saved (a notification waiting on an I/O thread's eventfd
        would otherwise be lost with this process)."""
        for index, queue in enumerate(self._queues):
            if queue.virtqueue is not None and queue.virtqueue.has_available():
                self.notify(index)

    def save(self) -> VirtioMmioState:
        with self._queue_lock, self._lock:
            queues = []
            for q in self._queues:
                indices = q.virtqueue.indices() if q.virtqueue else (0, 0, 0)
                queues.append(QueueState(q.num, q.desc, q.driver, q.device, bool(q.virtqueue),
                                         *indices))  # fmt: skip
            return VirtioMmioState(
                self.status, self.interrupt_status, self.driver_features,
                self._device_features_sel, self._driver_features_sel, self._queue_sel,
                self.config_generation, queues,
            )  # fmt: skip

    def restore(self, state: VirtioMmioState) -> None:
        """Registers and live queues from a snapshot. The file is untrusted: the queues'
        areas are checked against guest memory as when the driver sets QueueReady."""
        if len(state.queues) != len(self._queues):
            saved, has = len(state.queues), len(self._queues)
            raise ValueError(f"{saved} queues saved, the device has {has}")
        words = (state.status, state.interrupt_status, state.device_features_sel,
                 state.driver_features_sel, state.queue_sel, state.config_generation)  # fmt: skip
        if any(not 0 <= w <= 0xFFFFFFFF for w in words):
            raise ValueError("a virtio-mmio register is not a 32-bit number")
        if state.driver_features & ~self.device_features:
            raise ValueError("the saved driver features were never offered")
        with self._queue_lock, self._lock:
            for saved, queue in zip(state.queues, self._queues, strict=True):
                if saved.num > queue.max_size:
                    raise ValueError(f"queue size {saved.num} > maximum {queue.max_size}")
                queue.num, queue.desc, queue.driver, queue.device = (
                    saved.num, saved.desc, saved.driver, saved.device)  # fmt: skip
                if saved.ready:
                    try:
                        queue.virtqueue = Virtqueue(
                            self.memory, saved.num, saved.desc, saved.driver, saved.device
                        )
                        queue.virtqueue.set_indices(
                            saved.last_avail, saved.used_idx, saved.signalled_idx
                        )
                    except VirtqueueError as e:
                        raise ValueError(str(e)) from None
            self.status, self.interrupt_status = state.status, state.interrupt_status
            self.driver_features = state.driver_features
            self._device_features_sel = state.device_features_sel
            self._driver_features_sel = state.driver_features_sel
            self._queue_sel, self.config_generation = state.queue_sel, state.config_generation
        if self.status & VIRTIO_CONFIG_S_DRIVER_OK:
            self.device.activate(self.driver_features, self._rings())

    # Notifications.

    def notify(self, queue_index: int) -> None:
        """Serve a queue's available buffers: for a QueueNotify write or an ioeventfd thread."""
        with self._queue_lock:
            self.notifies += 1
            if (
                self.status & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)
                or not self.status & VIRTIO_CONFIG_S_DRIVER_OK
                or not 0 <= queue_index < len(self._queues)
            ):
                return
            queue = self._queues[queue_index].virtqueue
            if queue is None:
                return
            raised = 0
            try:
                # Drain with driver notifications off, then re-check: a buffer made
                # available just before they came back on would otherwise wait.
                while True:
                    queue.set_notifications(False)
                    if self.device.process(queue_index, queue):
                        break
                    queue.set_notifications(True)
                    if not queue.has_available():
                        break
            except VirtqueueError:
                with self._lock:
                    raised = self._set_needs_reset()
            if queue.needs_interrupt():
                with self._lock:
                    self.interrupt_status |= VIRTIO_MMIO_INT_VRING
                raised |= VIRTIO_MMIO_INT_VRING
        if raised:
            self._interrupt()

    def config_changed(self) -> None:
        """For a device whose config space changed (a resized disk): 2.5.1 and 4.2.3.4."""
        with self._lock:
            self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
            running = bool(self.status & VIRTIO_CONFIG_S_DRIVER_OK)
            if running:
                self.interrupt_status |= VIRTIO_MMIO_INT_CONFIG
        if running:
            self._interrupt()
