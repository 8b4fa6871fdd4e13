"""Which guest pages were written since the last look: KVM's dirty log (api.rst 4.8).

With ``KVM_MEM_LOG_DIRTY_PAGES`` on a memory slot, KVM write-protects its pages and
records each first write in a bitmap, one bit a page; ``KVM_GET_DIRTY_LOG`` hands the
bitmap over and clears it (without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, which pyvmm does
not enable). Live migration's pre-copy rounds send what it names (docs/state.md).
"""

from __future__ import annotations

import mmap

from vmm.kvm._kvm import ffi, lib
from vmm.kvm.ioctl import ioctl


def set_dirty_logging(vm, on: bool) -> None:
    """Start (or stop) logging writes on every memory slot of ``vm``."""
    for slot in range(len(vm.slots)):
        vm.update_slot(slot, lib.KVM_MEM_LOG_DIRTY_PAGES if on else 0)


def dirty_pages(vm, slot: int) -> list[int]:
    """The page numbers (from the slot's start) written since the last call, and clear them."""
    pages = vm.slots[slot][1] // mmap.PAGESIZE
    words = (pages + 63) // 64  # KVM's bitmap is in longs, each page a bit
    bitmap = ffi.new("uint64_t[]", max(words, 1))
    log = ffi.new("struct kvm_dirty_log *")
    log.slot = slot
    log.dirty_bitmap = bitmap
    ioctl(vm.fd, lib.KVM_GET_DIRTY_LOG, log, what="KVM_GET_DIRTY_LOG")
    dirty = []
    for w in range(words):
        word = bitmap[w]
        while word:
            low = word & -word
            dirty.append(w * 64 + low.bit_length() - 1)
            word ^= low
    return dirty
