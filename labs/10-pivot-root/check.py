"""Lab 10's checks: the container's / is the image, its /proc its own, the host gone."""

import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, host_mounts, mini, rootfs  # noqa: E402, F401

from vmm.lab import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 3: pivot_root into the image"
CONCEPT = "a root filesystem of its own; pivot_root versus chroot; a private /proc"


def root_is_the_image(workdir: Path) -> str:
    nonce = secrets.token_hex(4)
    (rootfs(workdir) / "etc" / "image-id").write_text(nonce + "\n")
    expect(mini(workdir, "/bin/cat", "/etc/image-id"), 0, nonce)
    return "/etc/image-id is the image's"


def host_is_unreachable(workdir: Path) -> str:
    probe = (
        "for p in /.oldroot /work /usr/lib /etc/debian_version; do [ -e $p ] && echo $p; done; true"
    )
    proc = mini(workdir, "/bin/sh", "-c", probe)
    expect(proc, 0, "")
    return "no /.oldroot, none of the host's /work, /usr/lib, /etc/debian_version"


def proc_shows_only_the_container(workdir: Path) -> str:
    proc = mini(workdir, "/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'")
    expect(proc, 0)
    if int(proc.stdout.strip() or 99) > 3:
        raise CheckFailed(f"/proc lists {proc.stdout.strip()} processes: the host's /proc")
    if f"{rootfs(workdir)}/proc" in host_mounts():
        raise CheckFailed("the container's /proc is mounted on the host")
    return f"/proc lists {proc.stdout.strip()} processes"


CHECKS = [
    Check(
        "/ is the image's root filesystem",
        "bind-mount the root on itself, then pivot_root(new, new/.oldroot) and chdir('/')",
        root_is_the_image,
    ),
    Check(
        "the host's tree is unreachable (pivot_root, not chroot)",
        "after pivot_root, umount2('/.oldroot', MNT_DETACH) and remove the directory",
        host_is_unreachable,
    ),
    Check(
        "/proc shows the container's processes only",
        "mount a fresh proc on the new root's /proc, inside the new PID namespace",
        proc_shows_only_the_container,
    ),
]
