"""Lab 24: how fast a guest dirties its memory, read from KVM's dirty log.

Boots the tiny kernel running guest/demo/dirty.c, which writes a byte in each of PAGES
pages of a buffer, pass after pass, turns on KVM's dirty log for guest memory, and every
INTERVAL seconds takes the log (KVM_GET_DIRTY_LOG hands over a bitmap of the pages
written since the last look, and clears it). Prints each interval's count and rate, and
how many of the buffer's pages each interval saw:

    python dirty_rate.py PAGES [INTERVAL]

    interval 1: 302 pages dirty, 1510 pages/s, 300 of the buffer's 300
    ...

This is what live migration's pre-copy rounds read (vmm/control/migration.py), and QEMU's
`calc-dirty-rate` in its dirty-bitmap mode.
"""

import mmap
import re
import sys
import threading
import time

from vmm.guests import tiny as guest
from vmm.kvm import dirtylog
from vmm.vm.machine import Machine, MachineConfig

PAGE = mmap.PAGESIZE
PASSES = 120  # the workload's passes: 20-85 ms each, so 2-10 s, some 10-40 whole intervals
BUFFER = re.compile(rb"buffer 0x([0-9a-f]+), pages (\d+)")


def pages_in(bitmap: bytes) -> list[int]:
    """The page numbers, from the memory slot's start, whose bits are set in KVM's dirty
    bitmap: 64-bit words, little endian on x86, bit i of the whole bitmap for page i."""
    # >>> 24: every set bit's number: word w's bit b is page 64 * w + b (byte k of the
    # ... bitmap holds pages 8k to 8k + 7, its lowest bit the first); a page a bit
    pages = []
    for index, byte in enumerate(bitmap):
        for bit in range(8):
            if byte >> bit & 1:
                pages.append(8 * index + bit)
    return pages
    # <<<


def dirty_since_last_look(vm) -> set[int]:
    """Guest-physical page numbers written since the last call, over every memory slot."""
    # >>> 24: for each slot (vm.slots: (guest address, size, ...)), its bitmap
    # ... (dirtylog.dirty_bitmap(vm, slot)) turned into page numbers, moved to the slot's
    # ... first guest page
    dirty = set()
    for slot, (gpa, *_) in enumerate(vm.slots):
        dirty.update(gpa // PAGE + page for page in pages_in(dirtylog.dirty_bitmap(vm, slot)))
    return dirty
    # <<<


def main() -> None:
    pages = int(sys.argv[1])
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
    guest.ensure_built(guest.KERNEL, guest.DIRTY)
    said = bytearray()
    machine = Machine(
        MachineConfig(
            guest.KERNEL,
            program=guest.DIRTY,
            cmdline=f"-- {pages} {PASSES}",
            output=said.extend,
        )
    )
    runner = threading.Thread(target=machine.run, daemon=True)
    runner.start()
    while not BUFFER.search(said) and runner.is_alive():
        time.sleep(0.01)
    found = BUFFER.search(said)
    if not found:
        sys.exit(f"the workload never said where its buffer is: {bytes(said)!r}")
    first = int(found[1], 16) // PAGE
    buffer = set(range(first, first + int(found[2])))
    dirtylog.set_dirty_logging(machine.vm, True)
    dirty_since_last_look(machine.vm)  # start from a clean log
    n = 0
    while runner.is_alive():
        started = time.monotonic()
        time.sleep(interval)
        dirty = dirty_since_last_look(machine.vm)
        if b"done" in said:  # the workload stopped within this interval: not a whole one
            break
        n += 1
        rate = len(dirty) / (time.monotonic() - started)
        print(
            f"interval {n}: {len(dirty)} pages dirty, {rate:.0f} pages/s, "
            f"{len(dirty & buffer)} of the buffer's {len(buffer)}",
            flush=True,
        )
    runner.join()
    machine.close()


if __name__ == "__main__":
    main()
