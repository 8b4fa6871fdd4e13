"""Lab 9's checks: the container has its own PID 1, hostname and mount table."""

import os
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, host_mounts, mini, umount_leaked  # noqa: E402, F401

from vmm.lab import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 2: PID, UTS, mount and IPC namespaces"
CONCEPT = "unshare(2): what the process sees of the system becomes its own"


def is_pid_1(workdir: Path) -> str:
    expect(mini(workdir, "/bin/sh", "-c", "echo $$"), 0, "1")
    return "the container's shell is PID 1"


def has_its_hostname(workdir: Path) -> str:
    before = socket.gethostname()
    expect(mini(workdir, "--hostname=lab-nine", "/bin/hostname"), 0, "lab-nine")
    if socket.gethostname() != before:
        raise CheckFailed(f"the host's hostname changed to {socket.gethostname()}")
    return "hostname lab-nine inside, the host's unchanged"


def mounts_stay_inside(workdir: Path) -> str:
    target = workdir / "mnt"
    target.mkdir(exist_ok=True)
    name = f"mini-run-lab9-{os.urandom(4).hex()}"  # this run's: not another's on the machine
    script = f"mount -t tmpfs {name} {target} && grep -c {name} /proc/self/mountinfo"
    proc = mini(workdir, "/bin/sh", "-c", script)
    if umount_leaked(target):
        raise CheckFailed("the tmpfs mounted inside the container appeared on the host")
    expect(proc, 0, "1")
    if name in host_mounts():
        raise CheckFailed("the container's tmpfs is in the host's mount table")
    return "a tmpfs mounted inside is not on the host"


def ipc_is_its_own(workdir: Path) -> str:
    made = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
    shm_id = made.stdout.split()[-1]
    try:
        # /proc/sysvipc/shm lists the reader's IPC namespace: a header, then a line each.
        proc = mini(workdir, "/bin/sh", "-c", "tail -n +2 /proc/sysvipc/shm | wc -l")
    finally:
        subprocess.run(["ipcrm", "-m", shm_id], check=False)
    expect(proc, 0)
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
