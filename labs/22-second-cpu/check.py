"""Lab 22's checks: with the student's INIT-SIPI-SIPI (smp.c), every application processor
starts, and each one says its APIC id itself: the trace names the vCPU that wrote each
byte, so a boot CPU printing on the others' behalf does not pass."""

import re
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, once, run_student, tail

TITLE = "Bring up a second CPU: INIT, SIPI, SIPI"
CONCEPT = "local APIC, inter-processor interrupts, the wait-for-SIPI state, a real-mode trampoline"
NEEDS = ("kvm",)
FILES = ("../../guest/kernel/smp.c",)
CPUS = 3
_OUT = re.compile(r"^\[ *\d+\] vcpu(\d+) .*out port 0x03f8 size 1 data ([0-9a-f]{2})", re.M)
_REAL = re.compile(r"^\[ *\d+\] vcpu(\d+) (\d+)-bit ring \d \w+ .* (0x[0-9a-f]+): ", re.M)
RESET_VECTOR = 0xFFFFFFF0  # where INIT leaves a CPU (SDM vol. 3, 9.1.4)
TRAMPOLINE = 0x70000  # guest/kernel/smp.h, AP_TRAMPOLINE


def _boot(workdir: Path):
    """One traced boot of three CPUs, which both checks grade."""
    return once(workdir, ("smp.c",), lambda: _build_and_boot(workdir))


def _build_and_boot(workdir: Path):
    targets = ["build/kernel.elf", "build/hello"]
    build = build_guest(workdir, {"kernel/smp.c": workdir / "smp.c"}, targets)
    pyvmm = [sys.executable, "-m", "vmm", "boot", "--cpus", str(CPUS), "--trace",
             "--kernel", str(build / "kernel.elf"), "--program", str(build / "hello")]  # fmt: skip
    return run_student(pyvmm, workdir, timeout=60)


def _written_by(trace: str) -> dict[int, str]:
    """What each vCPU wrote to the UART's transmit register, from its own exits."""
    out: dict[int, bytearray] = {}
    for cpu, byte in _OUT.findall(trace):
        out.setdefault(int(cpu), bytearray()).append(int(byte, 16))
    return {cpu: data.decode(errors="replace") for cpu, data in out.items()}


def _where_aps_ran(trace: str) -> str:
    """Where the trace saw each AP run real-mode code other than the reset vector: the
    page its SIPI named (a SIPI with vector v starts the CPU at v * 4096)."""
    seen: dict[int, str] = {}
    for cpu, bits, rip in _REAL.findall(trace):
        if int(cpu) and bits == "16" and int(rip, 16) != RESET_VECTOR:
            seen.setdefault(int(cpu), rip)
    return "".join(
        f"\n      vcpu{cpu} was seen in real mode at {rip}; the trampoline is at {TRAMPOLINE:#x}"
        for cpu, rip in sorted(seen.items())
    )


def every_cpu_starts(workdir: Path) -> str:
    proc = _boot(workdir)
    lost = re.findall(r"cpu (\d+): did not start", proc.stdout)
    if proc.returncode != 0 or lost or f"{CPUS} CPUs up" not in proc.stdout:
        raise CheckFailed(
            f"CPU {', '.join(lost) or '?'} never reached ap_main (status {proc.returncode}): "
            "no INIT before the SIPI (a CPU not in wait-for-SIPI ignores it), or a SIPI "
            f"naming the wrong page?{_where_aps_ran(proc.stderr)}\n{tail(proc)}"
        )
    return f"{CPUS} CPUs up, the boot CPU and {CPUS - 1} started by their IPIs"


def each_cpu_reports_itself(workdir: Path) -> str:
    proc = _boot(workdir)
    written = _written_by(proc.stderr)
    for cpu in range(1, CPUS):
        line = f"cpu {cpu}: APIC id {cpu}\n"
        if line not in proc.stdout:
            raise CheckFailed(f"no line {line.strip()!r}:\n{tail(proc)}")
        if written.get(cpu, "") != line:
            raise CheckFailed(
                f"{line.strip()!r} was written by vCPU(s) "
                f"{sorted(c for c, text in written.items() if line in text) or '?'}, and "
                f"vcpu{cpu} itself wrote {written.get(cpu, '')!r}: the line must come from the "
                "CPU it is about, read from its own local APIC"
            )
    return f"vcpu1..vcpu{CPUS - 1} each wrote its own 'cpu N: APIC id N' line"


CHECKS = [
    Check(
        "every application processor starts",
        "INIT (APIC_DM_INIT | APIC_LEVEL_ASSERT), then APIC_DM_STARTUP with the trampoline's "
        "page number (AP_TRAMPOLINE >> 12) as the vector, through lapic_send_ipi",
        every_cpu_starts,
    ),
    Check(
        "each CPU reports its APIC id from itself",
        "ap_main runs on the CPU that was started: the IPIs go to apic_id, not to the boot CPU",
        each_cpu_reports_itself,
    ),
]
