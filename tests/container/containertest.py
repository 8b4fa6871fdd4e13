"""What the container tests share: the real ``pyvmm`` command line, tar members for
hand-made layers, and the checks that a failure is one line and leaves nothing behind.

(A module of its own, not the conftest: test modules import these by name.)
"""

from __future__ import annotations

import glob
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from vmm.container.state import Store

REPO = Path(__file__).resolve().parents[2]
PYVMM = [sys.executable, "-c", "import sys; from vmm.cli import main; sys.exit(main())"]


class Pyvmm:
    """Runs the real ``pyvmm`` command line against the session's state directory."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60, **kw):
        env = {**os.environ, "PYVMM_ROOT": str(self.root)}
        return subprocess.run(
            [*PYVMM, *map(str, args)], input=input, capture_output=True, text=True,
            env=env, timeout=timeout, **kw,
        )  # fmt: skip

    def ok(self, *args: str, **kw) -> str:
        """Run and insist on success; return stdout."""
        r = self(*args, **kw)
        assert r.returncode == 0, f"pyvmm {' '.join(args)}: {r.returncode}\n{r.stderr}"
        return r.stdout

    def inspect(self, name: str) -> dict:
        return json.loads(self.ok("container", "inspect", name))

    def import_tar(self, members: list[tuple[tarfile.TarInfo, bytes | None]], ref: str, tmp: Path):
        """Import a layer tar built from ``members``; returns the CompletedProcess."""
        path = tmp / f"{ref.replace(':', '_')}.tar"
        with tarfile.open(path, "w") as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self("image", "import", path, ref)


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"", **attrs):
    """One tar member for ``Pyvmm.import_tar``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data or b"")
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, data if kind == tarfile.REGTYPE else None


def one_line_error(r) -> str:
    """The failed command's stderr, checked to be the single ``pyvmm: ...`` line."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyvmm: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def pyvmm_processes(root: Path) -> list[int]:
    """Processes other than this one started with PYVMM_ROOT=root (CLIs and monitors)."""
    marker = f"PYVMM_ROOT={root}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0") and int(pid) != os.getpid():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def host_state(root: Path) -> tuple[set[str], set[str]]:
    """The host's mount points, and the cgroups of this session's containers."""
    with open("/proc/self/mountinfo") as f:
        mounts = {" ".join(line.split()[3:5]) for line in f}  # root and mount point
    parent = Store(root).cgroup_parent
    return mounts, {
        *glob.glob(f"/sys/fs/cgroup/{parent}"),
        *glob.glob(f"/sys/fs/cgroup/*/{parent}"),
    }


def host_state_paths() -> tuple[set[str], set[str]]:
    """The host's mount points, and every pyvmm-runtime test cgroup (any hierarchy)."""
    with open("/proc/self/mountinfo") as f:
        mounts = {" ".join(line.split()[3:5]) for line in f}
    return mounts, {*glob.glob("/sys/fs/cgroup/pyvmm-test-*"),
                    *glob.glob("/sys/fs/cgroup/*/pyvmm-test-*")}  # fmt: skip
