"""What runs in a container and what it uses: ``top``'s process table and ``stats``'
figures, read from /proc and from the container's cgroup (``Cgroup.stats``, runc's
``events --stats`` shape, the same on cgroup v1 and v2).

``top`` lists the processes of the cgroup (host pids, as Docker's ``top`` does), with
``ps -ef``'s columns. ``stats`` computes Docker's figures:

- CPU %: CPU time used between two samples over the wall time between them, times 100:
  100% is one CPU busy (Docker's ``cpuDelta / systemDelta * onlineCPUs``, the same);
- memory: the cgroup's usage less its inactive file cache (reclaimable: Docker's
  "usage - inactive_file", ``total_inactive_file`` on v1), against its limit, or the
  host's memory when it has none (v2's "max", v1's huge number);
- PIDS: the processes and threads in the cgroup now.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass

from vmm.container.linux.cgroups import Cgroup

TOP_COLUMNS = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


def _user(uid: int) -> str:
    """The host's name for ``uid`` (ps resolves on the host too), else the number."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _tty(nr: int) -> str:
    """A controlling terminal number (stat field 7) as ps names it."""
    if nr == 0:
        return "?"
    major, minor = os.major(nr), os.minor(nr)
    return f"pts/{minor}" if 136 <= major <= 143 else f"tty{minor}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def process_row(pid: int) -> list[str] | None:
    """``ps -ef``'s row for ``pid``, or None if it ended meanwhile."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
    fields = stat[stat.rindex(b")") + 2 :].split()  # from field 3, state
    hz = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / hz  # utime + stime
    started = int(fields[19]) / hz  # clock ticks after boot
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    boot = time.time() - uptime
    elapsed = max(uptime - started, 1e-9)
    stime = time.strftime("%H:%M", time.localtime(boot + started))
    args = cmdline.rstrip(b"\0").split(b"\0") if cmdline else []
    cmd = " ".join(a.decode(errors="replace") for a in args) or f"[{comm}]"
    return [_user(uid), str(pid), fields[1].decode(), str(int(cpu * 100 / elapsed)), stime,
            _tty(int(fields[4])), _clock(cpu), cmd]  # fmt: skip


def top(cg: Cgroup) -> list[list[str]]:
    """The container's processes, oldest pid first, under ``TOP_COLUMNS``."""
    rows = [process_row(pid) for pid in sorted(cg.pids())]
    return [row for row in rows if row is not None]


def host_memory() -> int:
    """MemTotal, in bytes (/proc/meminfo)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Sample:
    """One reading of a container's cgroup, at ``when`` (monotonic seconds)."""

    when: float
    cpu_ns: int
    memory: int
    limit: int
    pids: int


def sample(cg: Cgroup) -> Sample:
    stats = cg.stats()
    memory = stats["memory"]
    usage = memory["usage"]
    cache = memory.get("stats", {})
    inactive = cache.get("inactive_file", cache.get("total_inactive_file", 0))
    total = host_memory()
    limit = usage["limit"]
    return Sample(
        when=time.monotonic(),
        cpu_ns=stats["cpu"]["usage"]["total"],
        memory=max(usage["usage"] - inactive, 0),
        limit=limit if 0 < limit < total else total,
        pids=stats["pids"]["current"],
    )


def cpu_percent(before: Sample, after: Sample) -> float:
    """CPU time over wall time between the samples, in percent of one CPU."""
    wall = after.when - before.when
    return 0.0 if wall <= 0 else max(after.cpu_ns - before.cpu_ns, 0) / (wall * 1e9) * 100
