"""``pyvmm bench clones``: N guests restored from one snapshot, and the memory they share.

Each clone maps the snapshot's memory file ``MAP_PRIVATE`` (vmm/control/snapshot.py): a page the
guest only reads is the page cache's one copy for every clone; a page it writes becomes
that clone's own. The figures come from the kernel's accounting of each process
(proc(5), /proc/PID/smaps): RSS counts a shared page in every process that maps it, PSS
divides it among them, and Private_Dirty is what a clone copied for itself. Their sums
over the clones, for the whole process and for the guest-memory mapping alone, say what
ten VMs cost beside ten times one.
"""

from __future__ import annotations

import os
import tempfile
import time

from vmm.bench.measure import pyvmm_command
from vmm.control import api
from vmm.errors import PyvmmError
from vmm.guests import tiny as guest

SETTLE = 1.0  # seconds the clones run before they are measured
READY_TIMEOUT = 60.0

_FIELDS = ("Rss", "Pss", "Private_Dirty", "Shared_Clean")


def smaps(pid: int, path: str) -> dict[str, dict[str, int]]:
    """Bytes by field for the whole process (smaps_rollup) and for the mappings of
    ``path`` (smaps), as ``{"process": {...}, "guest": {...}}``."""
    figures = {"process": dict.fromkeys(_FIELDS, 0), "guest": dict.fromkeys(_FIELDS, 0)}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in _FIELDS:
                figures["process"][name] += int(rest.split()[0]) << 10
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):  # a mapping's header line
                inside = line.rstrip("\n").endswith(" " + path)
            elif inside:
                name, _, rest = line.partition(":")
                if name in _FIELDS:
                    figures["guest"][name] += int(rest.split()[0]) << 10
    return figures


def _counter_snapshot(directory: str) -> None:
    """A snapshot of the tiny kernel running the counter, taken after a few lines."""
    import subprocess

    guest.ensure_built(guest.KERNEL, guest.COUNTER)
    sock = os.path.join(directory, "source.sock")
    argv = [*pyvmm_command(), "boot", "--program", guest.COUNTER, "--api-sock", sock]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        seen = b""
        while b"count 3\n" not in seen:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                raise PyvmmError("the counter guest ended before it could be snapshotted")
            seen += chunk
        api.request(sock, "pause")
        api.request(sock, "snapshot", dir=os.path.join(directory, "snapshot"))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _wait_ready(sock: str, proc) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PyvmmError(f"a clone ended with status {proc.returncode} before it ran")
        try:
            api.request(sock, "stats")
            return
        except api.ApiError:
            time.sleep(0.01)
    raise PyvmmError(f"a clone did not start within {READY_TIMEOUT:.0f} s")


def measure(count: int, snapshot_dir: str | None) -> dict:
    import subprocess

    with tempfile.TemporaryDirectory(prefix="pyvmm-clones-") as work:
        if snapshot_dir is None:
            _counter_snapshot(work)
            snapshot_dir = os.path.join(work, "snapshot")
        snapshot_dir = os.path.abspath(snapshot_dir)
        memory_file = os.path.join(snapshot_dir, "memory")
        data_bytes = os.stat(memory_file).st_blocks * 512
        procs = []
        try:
            for i in range(count):
                sock = os.path.join(work, f"clone{i}.sock")
                argv = [*pyvmm_command(), "boot", "--restore", snapshot_dir, "--api-sock", sock]
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                procs.append(proc)
                _wait_ready(sock, proc)
            time.sleep(SETTLE)
            clones = [smaps(p.pid, memory_file) for p in procs]
        finally:
            for p in procs:
                p.kill()
                p.wait()
    total = {
        part: {field: sum(c[part][field] for c in clones) for field in _FIELDS}
        for part in ("process", "guest")
    }
    return {
        "clones": count,
        "snapshot": snapshot_dir,
        "snapshot_data_bytes": data_bytes,
        "per_clone": clones,
        "sum": total,
    }


def table(result: dict) -> str:
    mib = 1 << 20
    s = result["sum"]
    n = result["clones"]
    rows = [
        f"{n} clones restored from one snapshot ({result['snapshot_data_bytes'] / mib:.1f} "
        "MiB of guest memory in its file)",
        f"{'':34} {'RSS':>10} {'PSS':>10} {'private':>10}",
    ]
    parts = (("guest", "guest memory mapping, summed"), ("process", "whole processes, summed"))
    for part, label in parts:
        f = s[part]
        rows.append(
            f"{label:34} {f['Rss'] / mib:9.1f}M {f['Pss'] / mib:9.1f}M "
            f"{f['Private_Dirty'] / mib:9.1f}M"
        )
    g = s["guest"]
    if g["Rss"]:
        rows.append(
            f"the clones' guest memory costs the host {g['Pss'] / mib:.1f} MiB (PSS) where "
            f"RSS counts {g['Rss'] / mib:.1f} MiB: {g['Rss'] / max(g['Pss'], 1):.1f}x shared"
        )
    return "\n".join(rows)
