"""Lab 2's checks: the student's run loop runs a given guest to its HLT."""

import secrets
from pathlib import Path

from vmm import guest
from vmm.lab import Check, CheckFailed, require, run_student, tail

TITLE = "Write the KVM run loop"
CONCEPT = "KVM_CREATE_VM, a memory slot, a vCPU, registers, KVM_RUN, exits"
NEEDS = ("kvm",)
FILES = ("run_loop.py",)


def _guest(workdir: Path) -> tuple[Path, str]:
    """The lab's guest with a fresh word in its line: only a real run can print it."""
    guest.ensure_built(guest.KVMHELLO_LAB)
    nonce = secrets.token_hex(4)
    code = Path(guest.KVMHELLO_LAB).read_bytes()
    require(b"NONCE---" in code, "the lab's guest has no NONCE--- placeholder")
    path = workdir / "guest.bin"
    path.write_bytes(code.replace(b"NONCE---", nonce.encode()))
    return path, nonce


def prints_the_line(workdir: Path) -> str:
    path, nonce = _guest(workdir)
    proc = run_student(["run_loop.py", str(path)], workdir, timeout=30)
    expected = f"hello from the guest your run loop ran: {nonce}"
    if expected not in proc.stdout.splitlines():
        raise CheckFailed(f"expected the line '{expected}'; the run printed:\n{tail(proc)}")
    return f"the guest printed '{expected}'"


def stops_at_hlt(workdir: Path) -> str:
    path, _ = _guest(workdir)
    proc = run_student(["run_loop.py", str(path)], workdir, timeout=30)
    if proc.returncode != 0:
        raise CheckFailed(f"exit status {proc.returncode}, not 0:\n{tail(proc)}")
    return "exit status 0 after the guest's HLT"


CHECKS = [
    Check(
        "the guest's line reaches stdout",
        "each OUT to port 0x3f8 is an IoExit with is_write set; exit.data holds the byte",
        prints_the_line,
    ),
    Check(
        "the loop ends with status 0 when the guest halts",
        "without an in-kernel irqchip, HLT makes KVM_RUN return an HltExit: return 0 there",
        stops_at_hlt,
    ),
]
