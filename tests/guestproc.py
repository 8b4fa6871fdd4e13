"""A real ``pyvmm boot`` running in the background, its output read as it comes.

The state tests (snapshot, restore, migration) drive a running guest from outside, as a
user would: start it, wait for a line, talk to its control socket, stop it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

from vmtest import ROOT

COUNT = re.compile(rb"count (\d+)\n")


class GuestProcess:
    """``pyvmm boot ARGS`` with stdout collected on a thread; a context manager that
    always ends the process."""

    def __init__(self, *args: str, stdin=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vmm", "boot", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            with self._lock:
                self.out += chunk

    def output(self) -> bytes:
        with self._lock:
            return bytes(self.out)

    def counts(self) -> list[int]:
        return [int(n) for n in COUNT.findall(self.output())]

    def wait_for(self, pattern: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.output():
            if self.proc.poll() is not None:
                self._reader.join(5)
                if pattern in self.output():
                    return
                raise AssertionError(
                    f"pyvmm ended ({self.proc.returncode}) before {pattern!r}: "
                    f"{self.output()[-500:]!r} {self.proc.stderr.read()!r}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in {timeout} s: {self.output()[-500:]!r}")
            time.sleep(0.02)

    def cpu_ticks(self) -> int:
        """utime + stime of the whole process, in clock ticks (proc(5), fields 14, 15)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C, and the status it ended with (its console flushed)."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        status = self.proc.wait(timeout)
        self._reader.join(5)
        return status

    def stderr(self) -> str:
        return self.proc.stderr.read().decode(errors="replace")

    def __enter__(self) -> GuestProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
