"""Lab 9's checks: the container has its own PID 1, hostname and mount table."""

import sys
from pathlib import Path
from subprocess import CompletedProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 2: PID, UTS, mount and IPC namespaces"
CONCEPT = "unshare(2): what the process sees of the system becomes its own"


def _on_a_host(workdir: Path, setup: str, after: str, *args: str) -> tuple[CompletedProcess, str]:
    """mini_run ARGS on a stand-in host: mount, UTS and IPC namespaces of the check's
    own, private from the real host's (unshare's default), where ``setup`` makes the
    host as the check wants it and ``after`` says what the host sees once the container
    has ended. Whatever the student's code gets wrong, the real host's mounts, hostname
    and System V IPC are untouched. Returns the run (its output the container's) and
    what ``after`` printed."""
    script = f'{setup} && "$@"; s=$?; printf "\\n@host %s\\n" "$({after})"; exit $s'
    inside = ("unshare", "--mount", "--uts", "--ipc", "--propagation", "private",
              "sh", "-c", script, "stand-in-host")  # fmt: skip
    proc = mini(workdir, *args, inside=inside)
    container, marker, host = proc.stdout.rpartition("\n@host ")
    if not marker:
        raise CheckFailed(f"the check's stand-in host did not start:\n{tail(proc)}")
    proc.stdout = container
    return proc, host.strip()


def is_pid_1(workdir: Path) -> str:
    proc, _ = _on_a_host(workdir, "true", "true", "/bin/sh", "-c", "echo $$")
    expect(proc, 0, "1")
    return "the container's shell is PID 1"


def has_its_hostname(workdir: Path) -> str:
    proc, host = _on_a_host(
        workdir, "hostname check-host", "hostname", "--hostname=lab-nine", "/bin/hostname"
    )
    if host != "check-host":
        raise CheckFailed(f"the container's sethostname renamed the host: {host}")
    expect(proc, 0, "lab-nine")
    return "hostname lab-nine inside, the host's unchanged"


def mounts_stay_inside(workdir: Path) -> str:
    """On a host whose / is shared, as systemd makes it (whatever this machine does)."""
    target = workdir / "mnt"
    target.mkdir(exist_ok=True)
    count = "grep -c mini-run-lab9 /proc/self/mountinfo"
    script = f"mount -t tmpfs mini-run-lab9 {target} && {count}"
    proc, host = _on_a_host(workdir, "mount --make-rshared /", count, "/bin/sh", "-c", script)
    if host != "0":
        raise CheckFailed(
            "the tmpfs mounted in the container propagated to a host whose / is shared "
            "(as systemd makes it): the container's mounts are not private"
        )
    expect(proc, 0, "1")
    return "a tmpfs mounted inside does not reach a host whose / is shared"


def ipc_is_its_own(workdir: Path) -> str:
    # /proc/sysvipc/shm lists the reader's IPC namespace: a header, then a line each.
    count = "tail -n +2 /proc/sysvipc/shm | wc -l"
    proc, host = _on_a_host(workdir, "ipcmk -M 4096 >/dev/null", count, "/bin/sh", "-c", count)
    expect(proc, 0)
    if host != "1":
        raise CheckFailed(f"the check's host holds {host} SysV segments, not its 1")
    if proc.stdout.strip() != "0":
        raise CheckFailed(f"the container sees {proc.stdout.strip()} of the host's SysV segments")
    return "the host's shared-memory segment is not in the container's IPC namespace"


CHECKS = [
    Check(
        "the command is PID 1 of a new PID namespace",
        "unshare(CLONE_NEWPID) in the parent: the next child is PID 1 of the new namespace",
        is_pid_1,
    ),
    Check(
        "it has its own hostname",
        "CLONE_NEWUTS, then sethostname in the child",
        has_its_hostname,
    ),
    Check(
        "its mounts do not reach the host",
        "CLONE_NEWNS copies the mount table, but shared mounts still propagate: make / "
        "MS_REC | MS_PRIVATE first",
        mounts_stay_inside,
    ),
    Check(
        "it has its own System V IPC",
        "CLONE_NEWIPC: shared memory, semaphores and message queues become its own",
        ipc_is_its_own,
    ),
]
