"""What the checks of the mini-run labs (8 to 14, 18) share: an image root filesystem in the
student's folder, and running the student's mini_run.py on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vmm.lab import REPO_DIR, CheckFailed, run_student, tail

sys.path.insert(0, str(REPO_DIR / "scripts"))
from build_images import busybox_rootfs  # noqa: E402

FILES = ("../mini-run/mini_run.py",)
NEEDS = ("root",)


def rootfs(workdir: Path) -> Path:
    """``rootfs/`` in the student's folder: busybox and its applets (made once)."""
    root = workdir / "rootfs"
    if not (root / "bin" / "busybox").exists():
        tmp = workdir / "rootfs.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        tmp.mkdir()
        busybox_rootfs(tmp)
        tmp.rename(root)
    return root


def mini(workdir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``python mini_run.py ARGS`` in the student's folder; options come before ``rootfs``."""
    options = [a for a in args if a.startswith("--")]
    rest = [a for a in args if not a.startswith("--")]
    if options and options[-1] in ("--hostname", "--upper", "--memory", "--pids", "--cpus"):
        raise ValueError("mini() takes options as --name=value")
    rootfs(workdir)
    return run_student(["mini_run.py", *options, "rootfs", *rest], workdir, timeout)


def expect(proc: subprocess.CompletedProcess, status: int, stdout: str | None = None) -> None:
    if proc.returncode != status or (stdout is not None and proc.stdout.strip() != stdout):
        want = f"status {status}" + (f" and output '{stdout}'" if stdout is not None else "")
        raise CheckFailed(f"expected {want}; got status {proc.returncode}:\n{tail(proc)}")


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def umount_leaked(target: Path) -> bool:
    """Unmount what a broken mini_run left mounted on the host; True if there was any."""
    leaked = False
    while str(target) in host_mounts():
        subprocess.run(["umount", "-l", str(target)], check=False)
        leaked = True
        if str(target) in host_mounts() and not os.path.ismount(target):
            break
    return leaked
