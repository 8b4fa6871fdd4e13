"""Virtio devices (virtio 1.2): the split virtqueue, the virtio-mmio transport and the
block device backend, each in its own module and each testable without KVM.

A machine puts ``VirtioMmio(VirtioBlk(path), memory, interrupt)`` on its MMIO bus at a
base of its choosing, ``VIRTIO_MMIO_WINDOW_SIZE`` bytes long, and tells the guest where.
"""
