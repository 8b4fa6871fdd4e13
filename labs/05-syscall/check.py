"""Lab 5's checks: the student's kernel serves getpid, and the student's ring-3 program
gets 1 from it."""

import subprocess
import sys
from pathlib import Path

from vmm.lab import Check, CheckFailed, build_guest, run_student, tail

TITLE = "Rings and a system call of your own"
CONCEPT = "ring 3 to ring 0 and back: syscall, the system-call table, the return value"
NEEDS = ("kvm",)
FILES = ("../../guest/kernel/syscall.c", "getpid.c")

# The check's own caller of getpid, so that the kernel is checked apart from getpid.c.
_PROBE = """
int main(void) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(39L) : "rcx", "r11", "memory");
    return r == 1 ? 1 : r < 0 ? 100 - r : 99;
}
"""


def _build(workdir: Path, program: str, source: str) -> Path:
    """The student's kernel (their syscall.c in a copy of guest/) and one program."""
    files = {"kernel/syscall.c": workdir / "syscall.c", f"demo/{program}.c": source}
    return build_guest(workdir, files, ["build/kernel.elf", f"build/{program}"])


def _boot(workdir: Path, build: Path, program: str) -> subprocess.CompletedProcess:
    pyvmm = [sys.executable, "-m", "vmm", "boot", "--kernel", str(build / "kernel.elf"),
             "--program", str(build / program)]  # fmt: skip
    return run_student(pyvmm, workdir, timeout=60)


def kernel_serves_getpid(workdir: Path) -> str:
    build = _build(workdir, "probe", _PROBE)
    proc = _boot(workdir, build, "probe")
    if proc.returncode != 1:
        got = {99: "something else", 100 + 38: "-ENOSYS"}.get(proc.returncode, proc.returncode)
        raise CheckFailed(f"system call 39 returned {got}, not 1:\n{tail(proc)}")
    return "system call 39 returns 1"


def program_exits_with_its_pid(workdir: Path) -> str:
    build = _build(workdir, "getpid", (workdir / "getpid.c").read_text())
    proc = _boot(workdir, build, "getpid")
    if proc.returncode != 1:
        raise CheckFailed(
            f"pyvmm boot --program getpid exited {proc.returncode}, not 1:\n{tail(proc)}"
        )
    return "pyvmm boot --program getpid: exit status 1"


CHECKS = [
    Check(
        "the kernel answers getpid (39) with 1",
        "a handler, and its entry in syscall_table: an empty slot answers -ENOSYS",
        kernel_serves_getpid,
    ),
    Check(
        "your program exits with its PID",
        "the number goes in RAX, the result comes back in RAX; tell the compiler about RCX and R11",
        program_exits_with_its_pid,
    ),
]
