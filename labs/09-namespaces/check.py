"""Lab 9's checks: the container has its own PID 1, hostname and mount table."""

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, host_mounts, mini, umount_leaked  # noqa: E402, F401

from vmm.lab import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 2: PID, UTS and mount namespaces"
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
    script = f"mount -t tmpfs mini-run-lab9 {target} && grep -c mini-run-lab9 /proc/self/mountinfo"
    proc = mini(workdir, "/bin/sh", "-c", script)
    if umount_leaked(target):
        raise CheckFailed("the tmpfs mounted inside the container appeared on the host")
    expect(proc, 0, "1")
    if "mini-run-lab9" in host_mounts():
        raise CheckFailed("the container's tmpfs is in the host's mount table")
    return "a tmpfs mounted inside is not on the host"


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
]
