"""Lab 4's checks: the student's boot code reaches long mode, as the trace shows."""

import re
import subprocess
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail

TITLE = "CPU modes: real, protected, long"
CONCEPT = "CR0.PE, CR4.PAE, EFER.LME, CR0.PG, far jumps; what --trace shows"
NEEDS = ("kvm",)
FILES = ("../../guest/labs/realmode/realmode.S", "../../guest/labs/realmode/linker.ld")

LINES = [
    "realmode lab: 16-bit real mode",
    "realmode lab: 32-bit protected mode",
    "realmode lab: 64-bit long mode",
]


def _boot(workdir: Path) -> subprocess.CompletedProcess:
    """Assemble and link the student's realmode.S as guest/Makefile does, boot it traced."""
    build = subprocess.run(
        "gcc -c -o realmode.o realmode.S && ld -T linker.ld -o realmode.bin realmode.o",
        shell=True, cwd=workdir, capture_output=True, text=True,
    )  # fmt: skip
    if build.returncode:
        raise CheckFailed(f"realmode.S does not build:\n{tail(build)}")
    pyvmm = [sys.executable, "-m", "vmm", "boot", "--kernel", "realmode.bin", "--trace"]
    return run_student(pyvmm, workdir, timeout=60)


def prints_three_lines(workdir: Path) -> str:
    proc = _boot(workdir)
    if proc.stdout.splitlines() != LINES or proc.returncode:
        raise CheckFailed(
            f"expected the three lines and status 0; got {proc.returncode}:\n"
            + "\n".join(f"      | {x}" for x in proc.stdout.splitlines()[-4:])
        )
    return "three lines, status 0"


def last_line_in_long_mode(workdir: Path) -> str:
    proc = _boot(workdir)
    modes = re.findall(r"^\[\s*\d+\] (\d+-bit ring \d) +IO +out port 0x03f8", proc.stderr, re.M)
    order = list(dict.fromkeys(modes))
    if order != ["16-bit ring 0", "32-bit ring 0", "64-bit ring 0"]:
        raise CheckFailed(f"the UART writes happened in {order or 'no mode'}, not 16, 32, 64-bit")
    return f"{modes.count('64-bit ring 0')} UART writes in 64-bit mode"


CHECKS = [
    Check(
        "the guest prints all three lines and powers off",
        "after wrmsr, CR0.PG on, then 'ljmpl $0x18, $long_mode'",
        prints_three_lines,
    ),
    Check(
        "the last line is written from 64-bit code (--trace)",
        "long mode needs PAE paging: CR3 must point at the page tables before CR0.PG",
        last_line_in_long_mode,
    ),
]
