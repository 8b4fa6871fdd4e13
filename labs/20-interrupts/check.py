"""Lab 20's checks: with the student's IDT gates (cpu.c) and EOI (intr.c), the UART's
interrupts reach their handler, one per byte, and the run ends."""

import re
import subprocess
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, once, run_student, tail

TITLE = "Interrupts: from a device to a handler"
CONCEPT = "IRQ line, IOAPIC redirection, vector, IDT gate, handler, EOI"
NEEDS = ("kvm",)
FILES = ("../../guest/kernel/intr.c", "../../guest/kernel/cpu.c")
_COUNTS = re.compile(r"interrupts: timer (\d+), uart (\d+)")
UART_VECTOR = "vector 0x34"  # IOAPIC pin 4 -> 0x30 + 4 (intr.c, IRQ_VECTOR)


def _boot(workdir: Path) -> subprocess.CompletedProcess:
    """The student's kernel built and booted, once for both checks."""
    return once(workdir, ("intr.c", "cpu.c"), lambda: _build_and_boot(workdir))


def _build_and_boot(workdir: Path) -> subprocess.CompletedProcess:
    files = {"kernel/intr.c": workdir / "intr.c", "kernel/cpu.c": workdir / "cpu.c"}
    build = build_guest(workdir, files, ["build/kernel.elf", "build/hello"])
    pyvmm = [sys.executable, "-m", "vmm", "boot", "--interrupts", "--trace",
             "--kernel", str(build / "kernel.elf"), "--program", str(build / "hello")]  # fmt: skip
    try:
        return run_student(pyvmm, workdir, timeout=30, idle=3)
    except CheckFailed as e:
        raise CheckFailed(
            f"{e}: the kernel waits in hlt for an interrupt that never comes (after the "
            "first, the local APIC holds back every one of its priority until the EOI)"
        ) from None


def reaches_its_handler(workdir: Path) -> str:
    proc = _boot(workdir)
    if f"IRQ  KVM_IRQ_LINE gsi 4 -> {UART_VECTOR}" not in proc.stderr:
        raise CheckFailed(f"the VMM never raised the UART's line to {UART_VECTOR}:\n{tail(proc)}")
    fault = re.search(r"kernel fault: (#\w+)[^\n]*\(vector (\d+)", proc.stdout)
    if fault:
        raise CheckFailed(
            f"{UART_VECTOR} came and the CPU raised {fault[1]} instead: no present gate for "
            f"it in the IDT?\n{tail(proc)}"
        )
    counts = _COUNTS.search(proc.stdout)
    if proc.returncode != 0 or not counts or int(counts[2]) == 0:
        raise CheckFailed(f"no UART interrupt reached its handler:\n{tail(proc)}")
    return f"{UART_VECTOR} taken, the run ends with status 0"


def ends_each_with_an_eoi(workdir: Path) -> str:
    proc = _boot(workdir)
    counts = _COUNTS.search(proc.stdout)
    if not counts:
        raise CheckFailed(f"the kernel never printed its interrupt counts:\n{tail(proc)}")
    after_banner = proc.stdout.split("\n", 1)[1]
    printed = len(after_banner[: after_banner.index("interrupts:")])
    timer, uart = int(counts[1]), int(counts[2])
    if uart < printed:
        raise CheckFailed(f"{uart} UART interrupts for {printed} bytes: some EOI missing?")
    return f"{uart} UART interrupts for {printed} bytes, and the timer ticked {timer} times"


CHECKS = [
    Check(
        "the UART's interrupt reaches its handler through the IDT",
        "a present 64-bit interrupt gate (set_gate) for every vector irq_stubs lists",
        reaches_its_handler,
    ),
    Check(
        "every interrupt ends with an EOI",
        "write the local APIC's EOI register (lapic_write, APIC_EOI) after the handler",
        ends_each_with_an_eoi,
    ),
]
