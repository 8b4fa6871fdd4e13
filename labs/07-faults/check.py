"""Lab 7's checks: the student's run loop (lab 2's, grown) answers an MMIO read of
nothing and reports a triple fault where it happened."""

import re
from pathlib import Path

from vmm import guest
from vmm.lab import Check, CheckFailed, run_student, tail

TITLE = "Faults and the exit report"
CONCEPT = "MMIO exits, triple faults (KVM_EXIT_SHUTDOWN), what a report must show"
NEEDS = ("kvm",)
FILES = ("../02-run-loop/run_loop.py",)


def _run(workdir: Path):
    guest.ensure_built(guest.FAULT_LAB)
    code = Path(guest.FAULT_LAB).read_bytes()
    proc = run_student(["run_loop.py", guest.FAULT_LAB], workdir, timeout=30)
    return proc, 0x7C00 + code.index(b"\x0f\x0b")  # the ud2


def answers_mmio(workdir: Path) -> str:
    proc, _ = _run(workdir)
    if "it reads as all ones" not in proc.stdout:
        raise CheckFailed(f"the guest did not read all ones at 1 MiB:\n{tail(proc)}")
    if not re.search(r"MMIO read 0x100000 size 1", proc.stderr):
        raise CheckFailed(f"no 'MMIO read 0x100000 size 1' on stderr:\n{tail(proc)}")
    return "MMIO read 0x100000 size 1, answered 0xff"


def reports_the_triple_fault(workdir: Path) -> str:
    proc, ud2 = _run(workdir)
    m = re.search(r"triple fault at (0x[0-9a-f]+).*code: ([0-9a-f ]+)", proc.stderr)
    if not m or int(m[1], 16) != ud2 or not m[2].startswith("0f 0b"):
        raise CheckFailed(f"expected 'triple fault at {ud2:#x} ... code: 0f 0b ...':\n{tail(proc)}")
    if proc.returncode != 1:
        raise CheckFailed(f"exit status {proc.returncode} after a triple fault, not 1")
    return m[0]


CHECKS = [
    Check(
        "an MMIO read of nothing is answered with all ones",
        "MmioExit: exit.is_write False, fill exit.data before the next vcpu.run()",
        answers_mmio,
    ),
    Check(
        "the triple fault is reported where it happened",
        "ShutdownExit; in protected mode the address is CS's base plus RIP, and the bytes "
        "there are in your guest memory mmap",
        reports_the_triple_fault,
    ),
]
