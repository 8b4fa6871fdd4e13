"""Lab 12's checks: memory, pids and CPU limits, seen in what the kernel did."""

import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, expect, mini  # noqa: E402, F401

from vmm.lab import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 5: cgroups (memory, pids, CPU)"
CONCEPT = "cgroups v1 and v2: limits, the OOM killer, a fork bomb, CPU throttling; cgroup ns"
NEEDS = ("root", "cgroup")

_HOG = "x=$(yes | head -c 100000000); echo survived"  # 100 MB in a shell variable
_SMALL = "x=$(yes | head -c 1000000); echo survived"
_FORKS = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait"
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
    proc = mini(workdir, "--cpus=0.1", "/bin/sh", "-c", _SPIN, timeout=120)
    if proc.returncode != 0 or "throttled" not in proc.stderr:
        raise CheckFailed(f"expected 'mini_run: throttled N times':\n{tail(proc)}")
    line = next(x for x in proc.stderr.splitlines() if "throttled" in x)
    return line


def cgroup_path_is_hidden(workdir: Path) -> str:
    proc = mini(workdir, "--pids=50", "/bin/cat", "/proc/self/cgroup")
    expect(proc, 0)
    if "mini-run-" in proc.stdout or "pids:/\n" not in proc.stdout + "\n":
        raise CheckFailed(f"/proc/self/cgroup shows the host's paths:\n{tail(proc)}")
    return "pids:/ inside: the container's cgroup is its root"


def _mini_run_cgroups() -> set[str]:
    """mini-run-PID cgroups whose mini_run has ended: one still running (another
    student's, another check's) is not a leak."""
    found = glob.glob("/sys/fs/cgroup/mini-run-*") + glob.glob("/sys/fs/cgroup/*/mini-run-*")
    return {p for p in found if not Path(f"/proc/{p.rsplit('-', 1)[-1]}").exists()}


def cgroups_are_removed(workdir: Path) -> str:
    before = _mini_run_cgroups()  # left by someone else's run: not this one's doing
    expect(mini(workdir, "--pids=50", "/bin/true"), 0)
    left = sorted(_mini_run_cgroups() - before)
    if left:
        raise CheckFailed(f"cgroups left behind: {', '.join(left)}")
    return "no mini-run cgroup left"


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
