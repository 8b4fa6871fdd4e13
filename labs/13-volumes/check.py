"""Lab 13's checks: bind mounts show the host's directory, volumes outlive containers."""

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 6: volumes and bind mounts"
CONCEPT = "bind mounts; named volumes that outlive the container; read-only mounts"


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def bind_mount_is_the_host_directory(workdir: Path) -> str:
    shared = _fresh(workdir / "shared")
    (shared / "from-host").write_text("host wrote this\n")
    script = "cat /data/from-host && echo container wrote this > /data/from-container"
    expect(mini(workdir, f"--volume={shared}:/data", "/bin/sh", "-c", script), 0, "host wrote this")
    if not (shared / "from-container").exists():
        raise CheckFailed("the container's write did not reach the host directory")
    return "both ways: the host's file inside, the container's file outside"


def read_only_refuses_writes(workdir: Path) -> str:
    shared = _fresh(workdir / "shared")
    proc = mini(workdir, f"--volume={shared}:/data:ro", "/bin/sh", "-c", "echo x > /data/f")
    if proc.returncode == 0 or (shared / "f").exists():
        raise CheckFailed(f"a write to a :ro bind mount succeeded:\n{tail(proc)}")
    if "Read-only file system" not in proc.stderr:
        raise CheckFailed(f"expected 'Read-only file system':\n{tail(proc)}")
    return "Read-only file system"


def volume_outlives_the_container(workdir: Path) -> str:
    _fresh(workdir / "volumes")
    expect(mini(workdir, "--volume=notes:/data", "/bin/sh", "-c", "echo kept > /data/n"), 0)
    expect(mini(workdir, "--volume=notes:/data", "/bin/cat", "/data/n"), 0, "kept")
    if not (workdir / "volumes" / "notes" / "n").exists():
        raise CheckFailed("the volume's file is not in volumes/notes")
    return "written by one container, read by the next, kept in volumes/notes"


def new_volume_is_filled_from_the_image(workdir: Path) -> str:
    _fresh(workdir / "volumes")
    proc = mini(workdir, "--volume=etc:/etc", "/bin/cat", "/etc/passwd")
    if (
        proc.returncode
        or "root:x:0:0" not in proc.stdout
        or not (workdir / "volumes/etc/passwd").exists()
    ):
        raise CheckFailed(f"a new volume on /etc should start with the image's /etc:\n{tail(proc)}")
    return "volumes/etc holds the image's /etc"


CHECKS = [
    Check(
        "a bind mount is the host's directory",
        "mount(src, new_root + dst, None, MS_BIND | MS_REC), before pivot_root",
        bind_mount_is_the_host_directory,
    ),
    Check(
        "a :ro mount refuses writes",
        "MS_RDONLY is ignored on the first bind: remount with MS_REMOUNT | MS_BIND | MS_RDONLY",
        read_only_refuses_writes,
    ),
    Check(
        "a named volume outlives its container",
        "a name (no leading /) is a directory under --volumes, made on first use",
        volume_outlives_the_container,
    ),
    Check(
        "a new volume starts with the image's files",
        "on first use copy what the image has at DST (shutil.copytree) into the volume",
        new_volume_is_filled_from_the_image,
    ),
]
