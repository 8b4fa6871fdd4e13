"""What the checks of the mini-run labs (8 to 14, 18, 28) share: an image root filesystem in the
student's folder, and running the student's mini_run.py on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vmm.course.labs import REPO_DIR, CheckFailed, run_student, tail

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


def mini(
    workdir: Path, *args: str, timeout: float = 30, inside: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """``python mini_run.py ARGS`` in the student's folder; options come before ``rootfs``.
    ``inside`` is a command that runs mini_run.py, as its arguments (``unshare ...``)."""
    rootfs(workdir)
    return run_student([*inside, *mini_args(*args)], workdir, timeout)


def mini_args(*args: str) -> list[str]:
    options = [a for a in args if a.startswith("--")]
    rest = [a for a in args if not a.startswith("--")]
    if options and options[-1] in ("--hostname", "--upper", "--memory", "--pids", "--cpus"):
        raise ValueError("mini() takes options as --name=value")
    return [sys.executable, "mini_run.py", *options, "rootfs", *rest]


def expect(proc: subprocess.CompletedProcess, status: int, stdout: str | None = None) -> None:
    if proc.returncode != status or (stdout is not None and proc.stdout.strip() != stdout):
        want = f"status {status}" + (f" and output '{stdout}'" if stdout is not None else "")
        raise CheckFailed(f"expected {want}; got status {proc.returncode}:\n{tail(proc)}")


def own_processes(listing: str) -> str | None:
    """What is wrong with the PIDs ``ls /proc`` printed in the container, or None: a
    /proc of the container's own lists its PID 1 and a few more, never the host's."""
    pids = [x for x in listing.split() if x.isdigit()]
    if "1" not in pids:
        return f"/proc lists {', '.join(pids) or 'no processes'}: where is PID 1?"
    if len(pids) > 3:
        return f"/proc lists {len(pids)} processes: the host's /proc"
    return None


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()
