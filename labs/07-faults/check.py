"""Lab 7's checks: the student's run loop (lab 2's, grown) answers an MMIO read of
nothing and reports a triple fault where it happened."""

import re
import secrets
import subprocess
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, require, run_student, tail
from vmm.guests import tiny as guest

TITLE = "Faults and the exit report"
CONCEPT = "MMIO exits, triple faults (KVM_EXIT_SHUTDOWN), what a report must show"
NEEDS = ("kvm",)
FILES = ("../02-run-loop/run_loop.py",)


# The guest's load from 1 MiB, `movb %es:0x10, %al` with ES = 0xffff: the check makes it
# a 2-byte load (`movw %es:OFFSET, %ax`) from an offset it draws, so the report and the
# answer must follow the exit, not the lab's text.
_LOAD_BYTE = bytes.fromhex("26a01000")
_LOAD_WORD = 0xA1  # MOV AX, moffs16 (the 0xA0 of MOV AL, moffs8, one wider)
_ES_BASE = 0xFFFF0


def _run(workdir: Path) -> tuple[subprocess.CompletedProcess, int, int]:
    """Run the student's loop on the fault guest; returns the run, the ud2's address and
    the address of the MMIO load."""
    guest.ensure_built(guest.FAULT_LAB)
    code = Path(guest.FAULT_LAB).read_bytes()
    require(code.count(_LOAD_BYTE) == 1, "the lab's guest has changed: no load from 1 MiB")
    offset = 0x10 + secrets.randbelow(0xFFE0)
    load = bytes([0x26, _LOAD_WORD]) + offset.to_bytes(2, "little")
    path = workdir / "fault.bin"
    path.write_bytes(code.replace(_LOAD_BYTE, load))
    proc = run_student(["run_loop.py", str(path)], workdir, timeout=30)
    path.unlink()
    return proc, 0x7C00 + code.index(b"\x0f\x0b"), _ES_BASE + offset  # the ud2


def answers_mmio(workdir: Path) -> str:
    proc, _, addr = _run(workdir)
    if "it reads as all ones" not in proc.stdout:
        raise CheckFailed(
            f"the guest's 2-byte load at {addr:#x} did not read all ones:\n{tail(proc)}"
        )
    if not re.search(rf"MMIO read {addr:#x} size 2\b", proc.stderr):
        raise CheckFailed(f"no 'MMIO read {addr:#x} size 2' on stderr:\n{tail(proc)}")
    return f"MMIO read {addr:#x} size 2, answered 0xffff"


def reports_the_triple_fault(workdir: Path) -> str:
    proc, ud2, _ = _run(workdir)
    m = re.search(r"triple fault at (0x[0-9a-f]+).*code: ([0-9a-f ]+)", proc.stderr)
    if not m or int(m[1], 16) != ud2 or not m[2].startswith("0f 0b"):
        raise CheckFailed(f"expected 'triple fault at {ud2:#x} ... code: 0f 0b ...':\n{tail(proc)}")
    if proc.returncode != 1:
        raise CheckFailed(f"exit status {proc.returncode} after a triple fault, not 1")
    return m[0]


CHECKS = [
    Check(
        "an MMIO read of nothing is answered with all ones",
        "MmioExit: exit.is_write False, fill all of exit.data (its size is the load's) "
        "before the next vcpu.run()",
        answers_mmio,
    ),
    Check(
        "the triple fault is reported where it happened",
        "ShutdownExit; in protected mode the address is CS's base plus RIP, and the bytes "
        "there are in your guest memory mmap",
        reports_the_triple_fault,
    ),
]
