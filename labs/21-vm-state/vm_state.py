"""Lab 21: a VM's state as a thing to hold.

Boots the tiny kernel running the counter (guest/demo/counter.c) with a control socket,
snapshots it after "count 25", changes one register in the snapshot's manifest by DELTA,
restores it in a new pyvmm process and prints what the restored guest said:

    python vm_state.py DELTA
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time

from vmm.control import api
from vmm.course.labs import pyvmm, read_until
from vmm.guests import tiny as guest

COUNT = re.compile(rb"count (\d+)\n")
# Where the counter's code is (its ELF's text, linked at 4 MiB).
PROGRAM_START, PROGRAM_END = 0x400000, 0x600000


def take_snapshot(sock: str, snap: str) -> None:
    """Stop the guest and save its state into ``snap`` (a new directory)."""
    # >>> 21: pause the guest and snapshot it into snap, through its control socket
    # ... vmm.control.api.request(socket, op, **arguments) sends one request (docs/state.md)
    #| raise NotImplementedError
    api.request(sock, "pause")
    api.request(sock, "snapshot", dir=snap)
    # <<<


def in_the_program(snap: str) -> bool:
    """Whether the vCPU stopped in the counter itself (ring 3), not in the kernel's write:
    there n is in its register; in the kernel it is saved on the kernel's stack."""
    with open(os.path.join(snap, "manifest.json")) as f:
        rip = json.load(f)["vcpus"][0]["regs"]["rip"]
    return PROGRAM_START <= rip < PROGRAM_END


def edit_register(manifest: dict, printed: int, delta: int) -> str:
    """Add ``delta`` to the general register that holds the counter's n; return its name."""
    # >>> 21: find the register holding n and add delta to it
    # ... manifest["vcpus"][0]["regs"] maps each register's name (rax ... rip, rflags) to
    # ... its value; n is the last count printed, or one more if the loop stepped it already
    #| raise NotImplementedError
    regs = manifest["vcpus"][0]["regs"]
    (name,) = [reg for reg, value in regs.items() if value in (printed, printed + 1)]
    regs[name] += delta
    return name
    # <<<


def main() -> None:
    delta = int(sys.argv[1])
    guest.ensure_built(guest.KERNEL, guest.COUNTER)
    work = tempfile.mkdtemp()
    sock, snap = os.path.join(work, "api.sock"), os.path.join(work, "snap")
    source = pyvmm("boot", "--program", guest.COUNTER, "--api-sock", sock)
    try:
        before = read_until(source, COUNT, 25)
        take_snapshot(sock, snap)
        while not in_the_program(snap):  # try again a moment later
            shutil.rmtree(snap)
            api.request(sock, "resume")
            time.sleep(0.005)
            take_snapshot(sock, snap)
        source.kill()  # stopped in the program, it has printed every line it began
        before += source.stdout.read()
    finally:
        source.kill()
        source.wait()
    printed = int(COUNT.findall(before)[-1])
    path = os.path.join(snap, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    name = edit_register(manifest, printed, delta)
    with open(path, "w") as f:
        json.dump(manifest, f)
    restored = pyvmm("boot", "--restore", snap)
    try:
        after = read_until(restored, COUNT, 3)
    finally:
        restored.kill()
        restored.wait()
    counts = [int(n) for n in COUNT.findall(after)]
    print(f"last count before the snapshot: {printed}")
    print(f"changed: {name}")
    print(f"restored guest: {' '.join(map(str, counts))}")
    print("it booted again" if b"pyvmm tiny kernel" in after else "it went on without a boot")


if __name__ == "__main__":
    main()
