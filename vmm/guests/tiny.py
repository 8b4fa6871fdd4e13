"""The bundled guest: where its files are, and building them the first time they are needed.

Plain os.path and a lazy subprocess import: this runs on every ``pyvmm boot``, whose
whole-process time is measured.
"""

from __future__ import annotations

import os

from vmm.errors import PyvmmError

GUEST_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "guest"
)
KERNEL = os.path.join(GUEST_DIR, "build", "kernel.elf")
DEMO_PROGRAM = os.path.join(GUEST_DIR, "build", "hello")
RAWREAD = os.path.join(GUEST_DIR, "build", "rawread")
SPIN = os.path.join(GUEST_DIR, "build", "spin")  # `pyvmm bench vcpus`
COUNTER = os.path.join(GUEST_DIR, "build", "counter")  # docs/state.md
DIRTY = os.path.join(GUEST_DIR, "build", "dirty")  # labs/24-dirty-pages
REALMODE_LAB = os.path.join(GUEST_DIR, "build", "realmode.bin")
KVMHELLO_LAB = os.path.join(GUEST_DIR, "build", "kvmhello.bin")  # labs/02-run-loop
CMOS_LAB = os.path.join(GUEST_DIR, "build", "cmos.bin")  # labs/03-port-device
FAULT_LAB = os.path.join(GUEST_DIR, "build", "fault.bin")  # labs/07-faults
WORKLOAD = os.path.join(GUEST_DIR, "workload", "workload")
DEFAULT_CMDLINE = "console=ttyS0"
_SOURCE_SUFFIXES = (".c", ".h", ".S", ".ld", "Makefile")
# What each output is built from: directories (every source file in them) or files,
# as guest/Makefile has it.
_SOURCES = {
    KERNEL: ("kernel", "include", "Makefile"),
    DEMO_PROGRAM: ("demo/hello.c", "demo/start.S", "Makefile"),
    RAWREAD: ("demo/rawread.c", "demo/start.S", "Makefile"),
    SPIN: ("demo/spin.c", "demo/start.S", "Makefile"),
    COUNTER: ("demo/counter.c", "demo/start.S", "demo/demo.h", "Makefile"),
    DIRTY: ("demo/dirty.c", "demo/start.S", "demo/demo.h", "Makefile"),
    REALMODE_LAB: ("labs/realmode", "Makefile"),
    KVMHELLO_LAB: ("labs/kvmhello.S", "Makefile"),
    CMOS_LAB: ("labs/cmos.S", "Makefile"),
    FAULT_LAB: ("labs/fault.S", "Makefile"),
    WORKLOAD: ("workload",),
}


def _newest_source(paths: tuple[str, ...]) -> float:
    newest = 0.0
    for name in paths:
        path = os.path.join(GUEST_DIR, name)
        if os.path.isdir(path):
            with os.scandir(path) as entries:
                stamps = [e.stat().st_mtime for e in entries if e.name.endswith(_SOURCE_SUFFIXES)]
        else:
            stamps = [os.stat(path).st_mtime]
        newest = max([newest, *stamps])
    return newest


def _up_to_date(output: str) -> bool:
    try:
        return os.stat(output).st_mtime >= _newest_source(_SOURCES[output])
    except OSError:
        return False  # not built yet, or a source is missing: let make say what is wrong


def ensure_built(*outputs: str) -> None:
    """Run ``make -C guest`` if an output is missing or older than its sources."""
    if all(_up_to_date(o) for o in outputs):
        return
    if not os.path.exists(os.path.join(GUEST_DIR, "Makefile")):
        raise PyvmmError(f"the bundled guest's sources are not in {GUEST_DIR}")
    import subprocess

    proc = subprocess.run(["make", "-s", "-C", GUEST_DIR], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PyvmmError(f"building the bundled guest failed (make -C {GUEST_DIR}): {last[0]}")


def bundled_boot(program: str | None, cmdline: str, has_disk: bool) -> tuple[str, str, str]:
    """The bundled kernel and the program it runs: the workload on /dev/vda when there is
    a disk, the demo otherwise. Returns (kernel, program, command line)."""
    ensure_built(KERNEL, DEMO_PROGRAM, WORKLOAD)
    if program is None and has_disk:
        program = WORKLOAD
        if "--" not in cmdline.split():
            cmdline += " -- /dev/vda"
    return KERNEL, program or DEMO_PROGRAM, cmdline
