"""Lab 25: move a running guest to another pyvmm process.

Boots the tiny kernel running the counter (guest/demo/counter.c) with a control socket,
lets it count to 10, then moves it, still running, to a second pyvmm started to receive
it, and reports what each process printed and what the migration measured:

    python move.py
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

from vmm.control import api
from vmm.course.labs import pyvmm, read_until
from vmm.guests import tiny as guest

COUNT = re.compile(rb"count (\d+)\n")


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"nothing appeared at {path}")
        time.sleep(0.01)


def move(source_sock: str, work: str) -> tuple[subprocess.Popen, dict]:
    """Start the process that receives the guest, move the guest there from the VM behind
    ``source_sock``; returns that process and the migration's figures."""
    # >>> 25: start `pyvmm boot --incoming unix:PATH` (PATH a new file in work), wait for
    # ... its socket to appear (wait_for), then ask the source to migrate there:
    # ... api.request(source_sock, "migrate", to=...) returns the figures
    incoming = os.path.join(work, "incoming.sock")
    destination = pyvmm("boot", "--incoming", f"unix:{incoming}")
    wait_for(incoming)
    return destination, api.request(source_sock, "migrate", to=f"unix:{incoming}")
    # <<<


def main() -> None:
    guest.ensure_built(guest.KERNEL, guest.COUNTER)
    work = tempfile.mkdtemp()
    sock = os.path.join(work, "api.sock")
    source = pyvmm("boot", "--program", guest.COUNTER, "--api-sock", sock)
    destination = None
    try:
        before = read_until(source, COUNT, 10)
        destination, figures = move(sock, work)
        try:
            status = source.wait(timeout=5)  # it ends within a second of the move
        except subprocess.TimeoutExpired:
            status = "still running"
        before += source.stdout.read() if status != "still running" else b""
        after = read_until(destination, COUNT, 3)
    finally:
        for proc in (source, destination):
            if proc:
                proc.kill()
                proc.wait()
    print(f"last count on the source: {int(COUNT.findall(before)[-1])}")
    print(f"the source ended: {status}")
    print(f"destination: {' '.join(n.decode() for n in COUNT.findall(after))}")
    print("the destination booted" if b"pyvmm tiny kernel" in after else "no boot there")
    print(f"migration: {json.dumps(figures)}")


if __name__ == "__main__":
    main()
