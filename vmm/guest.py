"""The bundled guest: where its files are, and building them the first time they are needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vmm.errors import PyvmmError

GUEST_DIR = Path(__file__).resolve().parent.parent / "guest"
KERNEL = GUEST_DIR / "build" / "kernel.elf"
DEMO_PROGRAM = GUEST_DIR / "build" / "hello"
REALMODE_LAB = GUEST_DIR / "build" / "realmode.bin"
WORKLOAD = GUEST_DIR / "workload" / "workload"
_SOURCES = ("kernel", "include", "demo", "labs", "workload", "Makefile")


def _newest_source() -> float:
    newest = 0.0
    for name in _SOURCES:
        path = GUEST_DIR / name
        paths = [path] if path.is_file() else path.rglob("*") if path.exists() else []
        for p in paths:
            if p.suffix in (".c", ".h", ".S", ".ld") or p.name == "Makefile":
                newest = max(newest, p.stat().st_mtime)
    return newest


def ensure_built(*outputs: Path) -> None:
    """Run ``make -C guest`` if an output is missing or older than the guest's sources."""
    try:
        if all(o.exists() for o in outputs):
            oldest = min(o.stat().st_mtime for o in outputs)
            if oldest >= _newest_source():
                return
    except OSError:
        pass
    if not (GUEST_DIR / "Makefile").exists():
        raise PyvmmError(f"the bundled guest's sources are not in {GUEST_DIR}")
    proc = subprocess.run(["make", "-s", "-C", str(GUEST_DIR)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PyvmmError(f"building the bundled guest failed (make -C {GUEST_DIR}): {last[0]}")
