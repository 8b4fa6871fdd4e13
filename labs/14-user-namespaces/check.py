"""Lab 14's checks: with --userns the container's root is root inside and nobody outside."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, own_processes  # noqa: E402, F401
from minicheck import mini as _mini  # noqa: E402

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 7: user namespaces"
CONCEPT = "root inside, nobody outside: uid and gid maps"
NOBODY = 65534


def mini(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """mini_run with --userns, and the mistake that makes every check fail at once named
    for what it is rather than for what it breaks."""
    proc = _mini(workdir, "--userns", *args)
    if "mount proc" in proc.stderr and "Operation not permitted" in proc.stderr:
        raise CheckFailed(
            "mounting /proc was refused (EPERM): the container's PID namespace belongs to "
            f"the host's user namespace, not to the new one\n{tail(proc)}",
            hint="only a PID namespace owned by the new user namespace lets it mount proc: "
            "in the child, unshare(CLONE_NEWPID) after CLONE_NEWUSER and the setuid, then "
            "fork: the grandchild is PID 1 of a namespace the new user namespace owns",
        )
    if proc.returncode == 127 and "Permission denied" in proc.stderr:
        raise CheckFailed(
            "the container's root was refused its own working folder, which belongs to "
            f"nobody ({NOBODY}) on the host: root inside is not nobody outside\n{tail(proc)}",
            hint=f"the parent maps root to nobody ('0 {NOBODY} 1' into uid_map and gid_map), "
            "then the child becomes that root: setgroups([]), setgid(0), setuid(0)",
        )
    return proc


def root_inside(workdir: Path) -> str:
    proc = mini(workdir, "/bin/sh", "-c", "id -u; id -g")
    expect(proc, 0)
    if proc.stdout.split() != ["0", "0"]:
        raise CheckFailed(
            f"id -u and id -g print {' and '.join(proc.stdout.split())} inside: "
            "not root after setuid(0)/setgid(0)"
        )
    return "uid 0, gid 0 inside"


def nobody_outside(workdir: Path) -> str:
    # Somewhere nobody can reach: the student's folder may be under a 0700 home.
    out = Path(tempfile.mkdtemp(prefix="mini-run-out-"))
    try:
        out.chmod(0o777)
        expect(mini(workdir, f"--volume={out}:/out", "/bin/touch", "/out/made"), 0)
        st = (out / "made").stat()
    finally:
        shutil.rmtree(out)
    if (st.st_uid, st.st_gid) != (NOBODY, NOBODY):
        raise CheckFailed(
            f"the file root made inside belongs to {st.st_uid}:{st.st_gid} on "
            f"the host, not nobody ({NOBODY})"
        )
    return f"a file made by root inside belongs to {NOBODY}:{NOBODY} (nobody) on the host"


def map_is_root_to_nobody(workdir: Path) -> str:
    proc = mini(workdir, "/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map")
    expect(proc, 0)
    if [line.split() for line in proc.stdout.splitlines()] != [["0", "65534", "1"]] * 2:
        raise CheckFailed(f"uid_map and gid_map read {proc.stdout.split()}, not 0 65534 1")
    return "uid_map and gid_map: 0 65534 1"


def still_pid_1_with_its_proc(workdir: Path) -> str:
    proc = mini(workdir, "/bin/sh", "-c", "echo $$; ls /proc")
    expect(proc, 0)
    pid, *listing = proc.stdout.split() or ["?"]
    if pid != "1":
        raise CheckFailed(f"the container's shell is PID {pid}, not 1 of a PID namespace")
    if wrong := own_processes(" ".join(listing)):
        raise CheckFailed(wrong)
    return "PID 1, and /proc shows the container's processes"


CHECKS = [
    Check(
        "root inside",
        "after the maps are written, setgid(0) and setuid(0) in the child",
        root_inside,
    ),
    Check(
        "nobody outside",
        "the parent writes '0 65534 1' to /proc/PID/uid_map and gid_map",
        nobody_outside,
    ),
    Check("the maps say so", "one line each: inside-ID outside-ID count", map_is_root_to_nobody),
    Check(
        "still PID 1 of its own /proc",
        "mounting proc needs a PID namespace owned by the new user namespace: unshare "
        "CLONE_NEWPID after CLONE_NEWUSER, and fork",
        still_pid_1_with_its_proc,
    ),
]
