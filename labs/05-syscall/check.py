"""Lab 5's checks: the student's kernel serves getpid, and the student's ring-3 program
gets 1 from it."""

import re
import subprocess
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, run_student, tail

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


# The boot, with a hardware breakpoint on the kernel's syscall_common (traps.S), where
# both ways in (SYSCALL in ring 0, or the INT3 it makes under PVM) meet with the number
# in RAX: the system calls the program made, seen from outside it. After each stop the
# vCPU steps one instruction with the breakpoint off, then it is armed again.
_HARNESS = """
import sys
from vmm.debug.gdb import debugregs
from vmm.kvm import DebugExit
from vmm.vm.machine import Machine, MachineConfig

kernel, program, entry = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
armed, calls = debugregs.debugreg([(entry, debugregs.EXECUTE, 1)]), []

def after_run(vcpu, exit):
    if isinstance(exit, DebugExit) and exit.pc == entry:
        calls.append(vcpu.get_regs().rax)
        vcpu.set_guest_debug(single_step=True)
    elif isinstance(exit, DebugExit):
        vcpu.set_guest_debug(debugreg=armed)

out = lambda data: sys.stdout.write(data.decode("latin-1"))
with Machine(MachineConfig(kernel, program=program, output=out)) as machine:
    machine.vcpu.set_guest_debug(debugreg=armed)
    machine.after_run.append(after_run)
    result = machine.run()
print(result.reason)
print("lab check: system calls", *calls)
sys.exit(result.status)
"""
_NAMES = {39: "getpid", 60: "exit", 231: "exit_group"}


def _symbol(elf: Path, name: str) -> int:
    out = subprocess.run(["nm", str(elf)], capture_output=True, text=True, check=True).stdout
    found = [int(row.split()[0], 16) for row in out.splitlines() if row.endswith(f" {name}")]
    if len(found) != 1:
        raise CheckFailed(f"the kernel has no symbol {name}: was traps.S changed?")
    return found[0]


def _boot(workdir: Path, build: Path, program: str) -> tuple[subprocess.CompletedProcess, list]:
    """Boot the program on the built kernel; returns the run and the numbers of the
    system calls the kernel's entry saw."""
    kernel = build / "kernel.elf"
    entry = _symbol(kernel, "syscall_common")
    harness = [sys.executable, "-c", _HARNESS, str(kernel), str(build / program), f"{entry:x}"]
    proc = run_student(harness, workdir, timeout=60)
    m = re.search(r"^lab check: system calls(.*)$", proc.stdout, re.M)
    if not m:
        raise CheckFailed(f"the boot did not finish:\n{tail(proc)}")
    return proc, [int(n) for n in m[1].split()]


def _named(calls: list) -> str:
    return ", ".join(f"{_NAMES.get(n, 'number')} ({n})" for n in calls) or "none"


def kernel_serves_getpid(workdir: Path) -> str:
    build = _build(workdir, "probe", _PROBE)
    proc, calls = _boot(workdir, build, "probe")
    if proc.returncode != 1:
        got = {99: "something else", 100 + 38: "-ENOSYS"}.get(proc.returncode, proc.returncode)
        raise CheckFailed(f"system call 39 returned {got}, not 1:\n{tail(proc)}")
    return f"system call 39 returns 1; the kernel's entry saw {_named(calls)}"


def program_exits_with_its_pid(workdir: Path) -> str:
    build = _build(workdir, "getpid", (workdir / "getpid.c").read_text())
    proc, calls = _boot(workdir, build, "getpid")
    if 39 not in calls:
        raise CheckFailed(
            f"getpid made no getpid system call (39): the kernel's entry saw {_named(calls)}"
        )
    if proc.returncode != 1:
        raise CheckFailed(
            f"getpid made the system call but exited {proc.returncode}, not 1:\n{tail(proc)}"
        )
    return f"exit status 1; the kernel's entry saw {_named(calls)}"


CHECKS = [
    Check(
        "the kernel answers getpid (39) with 1",
        "a handler, and its entry in syscall_table: an empty slot answers -ENOSYS",
        kernel_serves_getpid,
    ),
    Check(
        "your program asks the kernel for its PID (a system call) and exits with it",
        "the number goes in RAX, the result comes back in RAX; tell the compiler about RCX and R11",
        program_exits_with_its_pid,
    ),
]
