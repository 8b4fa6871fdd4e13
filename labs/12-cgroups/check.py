"""Lab 12's checks: memory, pids and CPU limits, seen in what the kernel did."""

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, expect, mini, mini_args, rootfs  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed, start_student, tail  # noqa: E402

TITLE = "mini-run 5: cgroups (memory, pids, CPU)"
CONCEPT = "cgroups v1 and v2: limits, the OOM killer, a fork bomb, CPU throttling; cgroup ns"
NEEDS = ("root", "cgroup")

_HOG = "x=$(yes | head -c 100000000); echo survived"  # 100 MB in a shell variable
_SMALL = "x=$(yes | head -c 1000000); echo survived"
_FORKS = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait"
CGROUP_ROOT = "/sys/fs/cgroup"
_V2 = os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers")  # one tree, not one per controller
_SPIN = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"


def oom_killer_strikes(workdir: Path) -> str:
    proc = mini(workdir, "--memory=32", "/bin/sh", "-c", _HOG, timeout=60)
    if proc.returncode != 137 or "the OOM killer struck" not in proc.stderr:
        raise CheckFailed(f"expected status 137 and 'the OOM killer struck':\n{tail(proc)}")
    expect(mini(workdir, "--memory=32", "/bin/sh", "-c", _SMALL), 0, "survived")
    return "100 MB under a 32 MiB limit: killed (137); 1 MB: survived"


def fork_bomb_is_stopped(workdir: Path) -> str:
    proc = mini(workdir, "--pids=6", "/bin/sh", "-c", _FORKS)
    if "can't fork" not in proc.stderr:
        raise CheckFailed(f"12 background sleeps under --pids=6 all started:\n{tail(proc)}")
    return "the shell could not fork past the limit"


def cpu_is_throttled(workdir: Path) -> str:
    """The quota and the throttling are read from the container's cgroup, found from the
    host while the container waits, then mini_run's report must say the same. The quota
    is read before the busy loop (a wrong one would make it crawl); after the loop the
    container sleeps a few times, periods that count in cpu.stat's nr_periods but not in
    its nr_throttled, so a report of the one is not taken for the other."""
    script = f"echo paused; read go; {_SPIN}; for i in 1 2 3 4 5; do sleep 0.2; done"
    with _paused(workdir, "--cpus=0.1", script, timeout=30) as proc:
        cpu = _container_cgroup(proc.pid, "cpu")
        quota = _cpu_quota(cpu)
        if quota is None or abs(quota - 0.1) > 0.005:
            got = "no quota" if quota is None else f"a quota of {quota:g} CPUs"
            for pid in (cpu / "cgroup.procs").read_text().split():  # mini_run cleans up
                os.kill(int(pid), signal.SIGKILL)
            _ended(proc)
            raise CheckFailed(f"--cpus=0.1, and the container's cgroup {cpu} has {got}")
        _resume(proc, timeout=120)
        throttled = _field(cpu / "cpu.stat", "nr_throttled")
        ended = _ended(proc, "go\n")
    if not throttled:
        raise CheckFailed(f"cpu.stat of {cpu} counts no throttling after a busy loop")
    reported = re.search(r"throttled (\d+) times", ended.stderr)
    # One more throttling may come between the check's read and mini_run's, no more.
    if not reported or not throttled <= int(reported[1]) <= throttled + 1:
        raise CheckFailed(
            f"the cgroup's cpu.stat said nr_throttled {throttled} as the container ended; "
            f"mini_run reported:\n{tail(ended)}"
        )
    return f"quota 0.1 CPUs in {cpu}; {reported[0]}, as cpu.stat counts"


@contextlib.contextmanager
def _paused(
    workdir: Path, option: str, script: str, timeout: float = 30
) -> Iterator[subprocess.Popen]:
    """mini_run OPTION running SCRIPT, then waiting for a line on its stdin: the check
    looks at the container from the host meanwhile, then sends the line (``_ended``, or
    ``_resume`` to go on to SCRIPT's own next pause)."""
    rootfs(workdir)
    args = mini_args(option, "/bin/sh", "-c", f"{script}; echo paused; read go")
    with start_student(args, workdir, stdin=subprocess.PIPE) as proc:
        _wait_for_pause(proc, timeout)
        yield proc


def _resume(proc: subprocess.Popen, timeout: float) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _wait_for_pause(proc, timeout)


def _wait_for_pause(proc: subprocess.Popen, timeout: float) -> None:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if (proc.stdout.readline() if ready else "").strip() != "paused":
        if not ready:
            os.killpg(proc.pid, signal.SIGKILL)
        raise CheckFailed(f"the container did not run its command:\n{tail(_ended(proc))}")


def _ended(proc: subprocess.Popen, stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(stdin, timeout=30)
    except subprocess.TimeoutExpired:
        raise CheckFailed("mini_run did not end within 30 s of its command") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _container_cgroups(session: int) -> dict[str, Path]:
    """Controller ("" on v2) -> the cgroup directory of a process of the student's run
    (its session) where it is not in the check's own cgroup, as the host sees it:
    /proc/PID/cgroup read from the host's cgroup namespace gives the whole path."""
    ours = _cgroups_of(os.getpid())
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _session(entry.name) == session:
            theirs = _cgroups_of(int(entry.name))
            moved = {c: path for c, path in theirs.items() if path != ours.get(c)}
            if moved:
                return {c: _mount_point(c) / path.lstrip("/") for c, path in moved.items()}
    return {}


def _container_cgroup(session: int, controller: str) -> Path:
    found = _container_cgroups(session).get("" if _V2 else controller)
    if found is None:
        raise CheckFailed(
            f"no process of the container is in a {controller} cgroup of its own: "
            "it runs in the host's, with no limit"
        )
    return found


def _session(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[3])  # man 5 proc: field 6
    except (OSError, ValueError, IndexError):
        return None  # gone meanwhile


def _cgroups_of(pid: int) -> dict[str, str]:
    """cgroups(7), /proc/PID/cgroup: "ID:CONTROLLERS:PATH" per v1 hierarchy; on v2 the
    line "0::PATH" is every controller's (key "")."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}  # gone meanwhile
    found = {}
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if _V2 and hid == "0":
            return {"": path}
        for controller in controllers.split(","):
            if not _V2 and controller and not controller.startswith("name="):  # v1, named
                found[controller] = path
    return found


def _mount_point(controller: str) -> Path:
    """Where the hierarchy of ``controller`` is mounted (v1), or the one tree (v2)."""
    if _V2:
        return Path(CGROUP_ROOT)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, fs = line.partition(" - ")
            fstype, _, options = fs.split()[:3]
            if fstype == "cgroup" and controller in options.split(","):
                return Path(fields.split()[4])
    raise CheckFailed(f"this host mounts no cgroup hierarchy for {controller}")


def _cpu_quota(cpu: Path) -> float | None:
    """The quota in CPUs: v2 cpu.max "QUOTA PERIOD" ("max": none), v1 cpu.cfs_quota_us
    (-1: none) of cpu.cfs_period_us (sched-bwc.rst)."""
    if _V2:
        quota, period = (cpu / "cpu.max").read_text().split()
    else:
        quota = (cpu / "cpu.cfs_quota_us").read_text().strip()
        period = (cpu / "cpu.cfs_period_us").read_text().strip()
    return None if quota in ("max", "-1") else int(quota) / int(period)


def _field(path: Path, name: str) -> int:
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def cgroup_path_is_hidden(workdir: Path) -> str:
    proc = mini(workdir, "--pids=50", "/bin/cat", "/proc/self/cgroup")
    expect(proc, 0)
    if "mini-run-" in proc.stdout or "pids:/\n" not in proc.stdout + "\n":
        raise CheckFailed(f"/proc/self/cgroup shows the host's paths:\n{tail(proc)}")
    return "pids:/ inside: the container's cgroup is its root"


def cgroups_are_removed(workdir: Path) -> str:
    with _paused(workdir, "--pids=50", "true") as proc:
        cgroups = set(_container_cgroups(proc.pid).values())
        expect(_ended(proc, "go\n"), 0)
    if not cgroups:
        raise CheckFailed("the container ran in no cgroup of its own")
    left = sorted(str(c) for c in cgroups if c.exists())
    for path in left:  # empty now: the container has ended
        with contextlib.suppress(OSError):
            os.rmdir(path)
    if left:
        raise CheckFailed(f"the container's cgroups are left behind: {', '.join(left)}")
    return f"{', '.join(sorted(map(str, cgroups)))}: gone"


CHECKS = [
    Check(
        "the OOM killer strikes at the memory limit",
        "v1: memory.limit_in_bytes (and memsw); v2: memory.max; the oom_kill count is in "
        "memory.oom_control (v1) or memory.events (v2)",
        oom_killer_strikes,
    ),
    Check(
        "a fork bomb stops at the pids limit", "pids.max, in both versions", fork_bomb_is_stopped
    ),
    Check(
        "a CPU limit throttles, as cpu.stat counts",
        "v1: cpu.cfs_quota_us of cpu.cfs_period_us; v2: cpu.max 'QUOTA PERIOD'; "
        "nr_throttled in cpu.stat",
        cpu_is_throttled,
    ),
    Check(
        "a cgroup namespace hides the host's cgroup paths",
        "unshare(CLONE_NEWCGROUP) in the child after it joined its cgroup",
        cgroup_path_is_hidden,
    ),
    Check(
        "the cgroup is removed when the container ends",
        "rmdir each cgroup directory after waitpid",
        cgroups_are_removed,
    ),
]
