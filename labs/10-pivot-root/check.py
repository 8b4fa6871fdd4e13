"""Lab 10's checks: the container's / is the image, its /proc its own, the host gone."""

import secrets
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, host_mounts, own_processes, rootfs  # noqa: E402, F401
from minicheck import mini as _mini  # noqa: E402

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402

TITLE = "mini-run 3: pivot_root into the image"
CONCEPT = "a root filesystem of its own; pivot_root versus chroot; a private /proc"
ESCAPE = Path(__file__).resolve().parent / "escape.c"


def mini(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """mini_run, with the one mistake of this lab that Python reports far from its cause."""
    proc = _mini(workdir, *args)
    if "variadic part" in proc.stderr:
        raise CheckFailed(
            f"cffi refused pivot_root's arguments:\n{tail(proc)}",
            hint="syscall() is variadic, and cffi passes only C objects in a variadic part: "
            'give pivot_root its paths as ffi.new("char[]", path.encode()), not bytes',
        )
    return proc


def root_is_the_image(workdir: Path) -> str:
    nonce = secrets.token_hex(4)
    (rootfs(workdir) / "etc" / "image-id").write_text(nonce + "\n")
    expect(mini(workdir, "/bin/cat", "/etc/image-id"), 0, nonce)
    return "/etc/image-id is the image's"


def host_is_unreachable(workdir: Path) -> str:
    paths = ("/.oldroot", "/work", "/usr/lib", "/etc/debian_version")
    probe = f"for p in {' '.join(paths)}; do [ -e $p ] && echo $p; done; true"
    proc = mini(workdir, "/bin/sh", "-c", probe)
    expect(proc, 0)
    if proc.stdout.strip():
        seen = ", ".join(proc.stdout.split())
        raise CheckFailed(f"the container sees the host's {seen}: is the old root detached?")
    return f"none of {', '.join(paths)}"


def chroot_escape_fails(workdir: Path) -> str:
    """A root process undoes a chroot (escape.c says how); a pivot_root it cannot."""
    binary = rootfs(workdir) / "bin" / "chroot-escape"
    made = subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(binary), str(ESCAPE)], capture_output=True, text=True
    )
    if made.returncode:
        raise CheckFailed(f"the check could not build its escape program: {made.stderr.strip()}")
    marker = workdir / f"host-only-{secrets.token_hex(4)}"
    marker.write_text("the host's tree\n")
    try:
        proc = mini(workdir, "/bin/chroot-escape", str(marker))
    finally:
        marker.unlink()
    if "escaped" in proc.stdout:
        raise CheckFailed(
            "a chroot escape program run in the container reached the host's files: the "
            "root was changed by chroot, not by pivot_root with the old root detached"
        )
    expect(proc, 0, "contained")
    return "the chroot escape climbs to the image's root, no further"


def proc_shows_only_the_container(workdir: Path) -> str:
    proc = mini(workdir, "/bin/ls", "/proc")
    expect(proc, 0)
    if wrong := own_processes(proc.stdout):
        raise CheckFailed(wrong)
    if f"{rootfs(workdir)}/proc" in host_mounts():
        raise CheckFailed("the container's /proc is mounted on the host")
    return f"/proc lists PIDs {', '.join(x for x in proc.stdout.split() if x.isdigit())}"


CHECKS = [
    Check(
        "/ is the image's root filesystem",
        "bind-mount the root on itself, then pivot_root(new, new/.oldroot) and chdir('/'); "
        'lib.syscall is variadic: its path arguments must be ffi.new("char[]", path.encode())',
        root_is_the_image,
    ),
    Check(
        "the host's tree is unreachable",
        "after pivot_root, umount2('/.oldroot', MNT_DETACH) and remove the directory",
        host_is_unreachable,
    ),
    Check(
        "a chroot escape fails (pivot_root, not chroot)",
        "chroot only moves the root directory; pivot_root moves the mount namespace's root, "
        "and with the old root detached there is nothing above it",
        chroot_escape_fails,
    ),
    Check(
        "/proc shows the container's processes only",
        "mount a fresh proc on the new root's /proc, inside the new PID namespace",
        proc_shows_only_the_container,
    ),
]
