"""Lab 14's checks: with --userns the container's root is root inside and nobody outside."""

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini  # noqa: E402, F401

from vmm.lab import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 7: user namespaces"
CONCEPT = "root inside, nobody outside: uid and gid maps"
NOBODY = 65534


def root_inside(workdir: Path) -> str:
    expect(mini(workdir, "--userns", "/bin/sh", "-c", "id -u; id -g"), 0, "0\n0")
    return "uid 0, gid 0 inside"


def nobody_outside(workdir: Path) -> str:
    # Somewhere nobody can reach: the student's folder may be under a 0700 home.
    out = Path(tempfile.mkdtemp(prefix="mini-run-out-"))
    try:
        out.chmod(0o777)
        expect(mini(workdir, "--userns", f"--volume={out}:/out", "/bin/touch", "/out/made"), 0)
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
    proc = mini(workdir, "--userns", "/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map")
    expect(proc, 0)
    if [line.split() for line in proc.stdout.splitlines()] != [["0", "65534", "1"]] * 2:
        raise CheckFailed(f"uid_map and gid_map read {proc.stdout.split()}, not 0 65534 1")
    return "uid_map and gid_map: 0 65534 1"


def still_pid_1_with_its_proc(workdir: Path) -> str:
    proc = mini(workdir, "--userns", "/bin/sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    expect(proc, 0)
    pid, count = proc.stdout.split()
    if pid != "1" or int(count) > 3:
        raise CheckFailed(f"PID {pid}, /proc lists {count} processes")
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
