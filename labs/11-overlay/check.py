"""Lab 11's checks: writes go to the upper layer, copy-on-write; the image never changes."""

import stat
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini, rootfs  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 4: an overlay with a writable layer"
CONCEPT = "overlayfs: read-only image layers, a writable upper layer, copy-up, whiteouts"

_WRITE = "echo changed >> /etc/passwd && echo new > /new-file && rm /etc/group"


def _run(workdir: Path) -> Path:
    upper = workdir / "upper"
    if upper.exists():
        import shutil

        shutil.rmtree(upper)
    upper.mkdir()
    expect(mini(workdir, f"--upper={upper}", "/bin/sh", "-c", _WRITE), 0)
    return upper


def writes_land_in_upper(workdir: Path) -> str:
    upper = _run(workdir)
    passwd = upper / "etc" / "passwd"
    if not passwd.exists() or "changed" not in passwd.read_text():
        raise CheckFailed(f"{passwd} is not the changed copy of the image's /etc/passwd")
    if not (upper / "new-file").exists():
        raise CheckFailed("/new-file is not in the upper layer")
    return "upper/etc/passwd is the copied-up, changed file; upper/new-file is there"


def image_is_unchanged(workdir: Path) -> str:
    _run(workdir)
    root = rootfs(workdir)
    if "changed" in (root / "etc" / "passwd").read_text() or (root / "new-file").exists():
        raise CheckFailed("the container wrote into the image (rootfs/)")
    if not (root / "etc" / "group").exists():
        raise CheckFailed("rm /etc/group in the container removed the image's file")
    return "rootfs/ is as it was"


def deletion_is_a_whiteout(workdir: Path) -> str:
    upper = _run(workdir)
    try:
        st = (upper / "etc" / "group").lstat()
    except FileNotFoundError:
        raise CheckFailed("no upper/etc/group: where did the deletion go?") from None
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != 0:
        raise CheckFailed("upper/etc/group is not a 0/0 character device (a whiteout)")
    return "upper/etc/group is a whiteout, a 0/0 character device"


CHECKS = [
    Check(
        "writes land in the upper layer (copy-up)",
        "mount('overlay', merged, 'overlay', 0, 'lowerdir=...,upperdir=...,workdir=...') and "
        "pivot_root into merged",
        writes_land_in_upper,
    ),
    Check(
        "the image is unchanged",
        "the image must be the lowerdir, never the upperdir",
        image_is_unchanged,
    ),
    Check(
        "a deletion is a whiteout in the upper layer",
        "overlayfs does this itself once the root is an overlay: see Documentation/"
        "filesystems/overlayfs.rst, 'whiteouts and opaque directories'",
        deletion_is_a_whiteout,
    ),
]
