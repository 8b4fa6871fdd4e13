"""Lab 6's checks: the student's used-ring update, alone on a ring and in a real boot that
reads a disk through it."""

import re
import secrets
import sys
from pathlib import Path

from vmm.bench.workload import expected_line
from vmm.course.labs import REPO_DIR, Check, CheckFailed, run_student, tail
from vmm.guests import tiny as guest

TITLE = "virtio: the used ring of a split virtqueue"
CONCEPT = "descriptor chains, available and used rings, notifications"
NEEDS = ("kvm",)
FILES = ("used_ring.py",)

# pyvmm's Virtqueue with its add_used replaced by the student's; then either a few
# returns on a bare ring, or a boot whose workload reads a disk through it.
_HARNESS = """
import struct, sys
from used_ring import add_used
from vmm.guests import tiny as guest
from vmm.devices.virtio.virtqueue import Virtqueue

def student_add_used(self, head, length):
    self._used_idx = add_used(self._used, self.size, self._used_idx, head, length)

Virtqueue.add_used = student_add_used
if sys.argv[1] == "ring":
    used = memoryview(bytearray(4 + 8 * 4 + 2))
    idx = 0xFFFE
    for head, length in ((3, 513), (1, 1), (2, 4097)):
        idx = add_used(used, 4, idx, head, length)
    print(struct.unpack_from("<H", used, 2)[0], idx,
          *(struct.unpack_from("<II", used, 4 + 8 * i) for i in range(4)))
elif sys.argv[1] == "order":
    # Watch the ring after each bytecode instruction of add_used (and of any function
    # it calls): when idx moves, what does the element's slot hold at that moment?
    used = memoryview(bytearray(4 + 8 * 8 + 2))
    seen, last = [], [bytes(used)]

    def look():
        now = bytes(used)
        if now[2:4] != last[0][2:4]:
            seen.append(struct.unpack_from("<II", now, 4 + 8 * (idx % 8)))
        last[0] = now

    def watch(frame, event, arg):
        frame.f_trace_opcodes = True
        look()
        return watch

    idx = 5
    for head, length in ((7, 4096), (2, 33)):
        sys.settrace(watch)
        new = add_used(used, 8, idx, head, length)
        sys.settrace(None)
        look()
        print(idx, head, length, *(seen[0] if seen else ("none", "none")))
        seen.clear()
        idx = new
else:
    from vmm.vm.machine import Machine, MachineConfig
    out = lambda data: sys.stdout.write(data.decode("latin-1"))
    config = MachineConfig(guest.KERNEL, cmdline="console=ttyS0 -- /dev/vda",
                           program=guest.WORKLOAD, output=out, disks=((sys.argv[2], False),))
    with Machine(config) as machine:
        result = machine.run()
    print(result.reason)
    sys.exit(result.status)
"""


def elements_land_in_their_slots(workdir: Path) -> str:
    proc = run_student([sys.executable, "-c", _HARNESS, "ring"], workdir, timeout=20)
    expected = "1 1 (2, 4097) (0, 0) (3, 513) (1, 1)"
    if proc.returncode or proc.stdout.strip() != expected:
        raise CheckFailed(
            "from index 0xfffe on a 4-entry ring, returning heads 3, 1, 2 should leave idx 1,\n"
            f"      ring (2, 4097) (0, 0) (3, 513) (1, 1) [id, len]; got:\n{tail(proc)}"
        )
    return "three returns from index 0xfffe wrap to 1, each element in its slot"


def element_before_index(workdir: Path) -> str:
    proc = run_student([sys.executable, "-c", _HARNESS, "order"], workdir, timeout=20)
    rows = [
        line.split()
        for line in proc.stdout.splitlines()
        if re.fullmatch(r"\d+ \d+ \d+ \w+ \w+", line)
    ]
    if proc.returncode or len(rows) != 2:
        raise CheckFailed(f"add_used failed on a watched ring:\n{tail(proc)}")
    for idx, head, length, seen_id, seen_len in rows:
        if (seen_id, seen_len) != (head, length):
            slot = int(idx) % 8
            raise CheckFailed(
                f"idx moved on from {idx} while slot {slot} held id {seen_id}, len {seen_len}, "
                f"not {head}, {length}: a driver polling idx could read the element before "
                "it is there"
            )
    return "each element was in its slot before idx moved (watched after every store)"


def guest_reads_its_disk(workdir: Path) -> str:
    guest.ensure_built(guest.KERNEL, guest.WORKLOAD)
    sys.path.insert(0, str(REPO_DIR / "scripts"))
    from mkimage import make_image

    image = workdir / "disk.img"
    make_image(image, 256 << 10, seed=secrets.randbelow(1 << 30))
    line = expected_line(str(image)).decode()
    proc = run_student([sys.executable, "-c", _HARNESS, "boot", str(image)], workdir, timeout=60)
    image.unlink()
    if line not in proc.stdout.splitlines():
        raise CheckFailed(
            f"the workload should print '{line[:40]}...'; the boot printed:\n{tail(proc)}"
        )
    return line


CHECKS = [
    Check(
        "used elements land in their slots and the index wraps at 16 bits",
        "the slot is used_idx % queue_size, but the idx field counts on to 65535 and wraps",
        elements_land_in_their_slots,
    ),
    Check(
        "the element is written before the index moves",
        "2.7.8.2: the device writes the used element, then updates idx; not the other way",
        element_before_index,
    ),
    Check(
        "the guest's disk reads complete (the workload hashes a 256 KiB disk)",
        "the driver waits for idx to move (post_and_wait in guest/kernel/virtio_blk.c): "
        "write the element first, then the index",
        guest_reads_its_disk,
    ),
]
