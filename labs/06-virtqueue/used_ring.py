"""Lab 6: the device's half of a split virtqueue: giving a finished request back.

The driver (the guest's virtio-blk driver, guest/kernel/virtio_blk.c) puts the head of
each request's descriptor chain in the available ring and notifies the device. The
device (pyvmm's VirtioBlk) serves it and must then hand the chain back through the
*used ring* (virtio 1.2, 2.7.8 "The Virtqueue Used Ring"), which lives in guest memory:

    struct virtq_used {
        le16 flags;                   offset 0
        le16 idx;                     offset 2: where the device puts the next element
        struct virtq_used_elem {      offset 4 + 8 * i
            le32 id;                  the head of the returned chain
            le32 len;                 bytes the device wrote into the chain's buffers
        } ring[queue_size];
        le16 avail_event;
    };

The driver polls ``idx``: until it moves, the guest's read never completes.
"""

import struct


def add_used(used: memoryview, queue_size: int, used_idx: int, head: int, length: int) -> int:
    """Return chain ``head`` to the driver, with ``length`` bytes written into its buffers.

    ``used`` is the used ring in guest memory (writable), ``used_idx`` the device's copy of
    its free-running 16-bit index. Returns the new index.
    """
    # >>> 6: write the element (id = head, len = length, little-endian u32s) into ring slot
    # ... used_idx modulo queue_size, then, only after it, publish it: the index + 1, wrapped
    # ... at 16 bits, written to the idx field (2.7.8.2: the element before the index)
    slot = 4 + 8 * (used_idx % queue_size)
    struct.pack_into("<II", used, slot, head, length)
    used_idx = (used_idx + 1) & 0xFFFF
    struct.pack_into("<H", used, 2, used_idx)
    return used_idx
    # <<<
