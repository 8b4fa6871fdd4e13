"""Running ``pyvmm boot --gdb`` for the debugger tests: the real CLI in a child process on
an ephemeral port, killed and reaped whatever the test did, and the real gdb against it."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vmtest import ROOT

needs_gdb = pytest.mark.skipif(
    shutil.which("gdb") is None, reason="needs gdb (scripts/setup.sh --all installs it)"
)
GDB_TIMEOUT = 60  # a hang fails the test instead of blocking the suite
_WAITING = re.compile(r"waiting for gdb on ([\d.]+):(\d+)")


class Pyvmm:
    """A ``pyvmm boot --gdb 127.0.0.1:0`` child: its port, and its output once it ends."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmm", "boot", *args, "--gdb", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        self.port = self._port()

    def _port(self) -> int:
        deadline = time.monotonic() + GDB_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], 1)
            if ready:
                line = self.proc.stderr.readline()
                match = _WAITING.search(line)
                if match:
                    return int(match.group(2))
                if not line:
                    break
        raise AssertionError(f"pyvmm never waited for gdb: {self.finish()}")

    def finish(self, timeout: float = GDB_TIMEOUT) -> tuple[int, str, str]:
        """Wait for pyvmm to end: (status, stdout, the rest of stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate()


@contextlib.contextmanager
def pyvmm_gdb(*args: str):
    vm = Pyvmm(*args)
    try:
        yield vm
    finally:
        vm.kill()


def spinning_program(tmp_path: Path) -> Path:
    """A static ring-3 program that never ends: something for Ctrl-C to stop."""
    src = tmp_path / "spin.S"
    src.write_text(".globl _start\n_start: jmp _start\n")
    prog = tmp_path / "spin"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-o", prog, src], check=True)
    return prog


def gdb_command(elf: Path | None, port: int, *commands: str) -> list[str]:
    cmd = ["gdb", "-batch", "-nx"]
    if elf is not None:
        cmd.append(str(elf))
    cmd += ["-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        cmd += ["-ex", c]
    return cmd


def run_gdb(elf: Path | None, port: int, *commands: str) -> str:
    """gdb in batch mode, connected to the stub, running ``commands``; its output."""
    proc = subprocess.run(
        gdb_command(elf, port, *commands),
        capture_output=True, text=True, cwd=ROOT, timeout=GDB_TIMEOUT,
    )  # fmt: skip
    return proc.stdout + proc.stderr
