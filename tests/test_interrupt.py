"""Ctrl-C during any pyvmm command: status 130, one line, nothing left behind.

A real SIGINT to a real ``pyvmm`` process (the installed entry point), sent once the
command is in the middle of its work.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_boot import build
from vmtest import ROOT, needs_kvm

PYVMM = str(Path(sys.executable).with_name("pyvmm"))


def interrupt(
    args: list[str], ready, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Start ``pyvmm ARGS``, wait until ``ready(proc)`` says it is at work, send SIGINT."""
    proc = subprocess.Popen(
        [PYVMM, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own group, so a failed test can kill all of it
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready(proc):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command never got to work"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def processes_running(argv: list[str]) -> list[int]:
    """Pids running exactly this command line (one unique to a test)."""
    wanted = b"\0".join(a.encode() for a in argv) + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read() == wanted:
                        pids.append(int(entry))
            except OSError:
                pass  # gone meanwhile
    return pids


@needs_kvm
def test_ctrl_c_during_boot_of_a_spinning_guest_with_a_disk(guest_build, tmp_path):
    spin = build(tmp_path, "spin", ".globl _start\n_start: jmp _start\n")
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    args = ["boot", "--program", str(spin), "--disk", str(disk), "--ioeventfd"]
    started = []

    def spinning(proc) -> bool:
        # The banner is printed by the guest kernel just before it enters ring 3.
        if not started:
            started.append(proc.stdout.readline())
        return started[0].startswith("pyvmm tiny kernel")

    proc = interrupt(args, spinning)
    assert proc.returncode == 130
    assert proc.stderr == "pyvmm: interrupted\n"
    assert disk.read_bytes() == bytes(1 << 20)


def test_ctrl_c_during_bench_kills_its_runs_and_removes_its_scratch(guest_build, tmp_path):
    # A benchmark row that would sleep for a minute: interrupted in its one run.
    marker = ["sleep", f"61.{os.getpid()}"]
    scratch = tmp_path / "tmp"  # its TMPDIR: another bench on the machine has its own
    scratch.mkdir()
    args = ["bench", "--fast", "--rows", "host", "--row", f"wait={' '.join(marker)}"]

    def at_work(_proc) -> bool:
        return bool(processes_running(marker)) and bool(os.listdir(scratch))

    proc = interrupt(args, at_work, env={"TMPDIR": str(scratch)})
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "pyvmm: interrupted\n"
    assert "Aborted!" not in proc.stderr
    assert processes_running(marker) == []
    assert os.listdir(scratch) == []
