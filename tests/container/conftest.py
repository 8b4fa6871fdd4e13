"""Fixtures for the container runtime tests: real containers, real mounts, real cgroups.

Every test gets the same per-session state directory (a tmp dir, never
/var/lib/pyvmm) holding the images scripts/build_images.py builds, and is checked on
the way out: whatever containers it left are force-removed, and then the host must
have exactly the mounts and pyvmm cgroups it had before the test.
"""

from __future__ import annotations

import glob
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from vmm.container.state import Store

REPO = Path(__file__).resolve().parents[2]
PYVMM = [sys.executable, "-c", "import sys; from vmm.cli import main; sys.exit(main())"]


def pytest_collection_modifyitems(config, items):
    """Every test here runs real containers: mark it ``root``, and skip it without root."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root: namespaces, mounts, cgroups"))


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    """The session's state directory, with busybox:latest and workload:latest imported."""
    root = tmp_path_factory.mktemp("pyvmm-root")
    workload = REPO / "guest" / "workload" / "workload"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "build_images.py", "--root", root,
         "--workload", workload if workload.is_file() else "/bin/busybox"],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


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


def _pyvmm_processes(root: Path) -> list[int]:
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


def _host_state(root: Path) -> tuple[set[str], set[str]]:
    """The host's mount points, and the cgroups of this session's containers."""
    with open("/proc/self/mountinfo") as f:
        mounts = {" ".join(line.split()[3:5]) for line in f}  # root and mount point
    parent = Store(root).cgroup_parent
    return mounts, {
        *glob.glob(f"/sys/fs/cgroup/{parent}"),
        *glob.glob(f"/sys/fs/cgroup/*/{parent}"),
    }


@pytest.fixture
def pyvmm(root: Path):
    """The CLI runner; on the way out, removes the test's containers and checks that
    no mount, cgroup, container directory or pyvmm process was left behind."""
    before = _host_state(root)
    runner = Pyvmm(root)
    try:
        yield runner
    finally:
        ids = runner("container", "ps", "-a", "-q").stdout.split()
        if ids:
            runner("container", "rm", "-f", *ids)
    after = _host_state(root)
    assert after[0] == before[0], f"mounts left behind: {after[0] - before[0]}"
    assert after[1] == before[1], f"cgroups left behind: {after[1] - before[1]}"
    assert not list((root / "containers").glob("*")), "container directories left behind"
    deadline = time.monotonic() + 5
    while _pyvmm_processes(root) and time.monotonic() < deadline:
        time.sleep(0.02)  # a monitor records the exit and removes the cgroup, then exits
    assert not _pyvmm_processes(root), "pyvmm processes left behind"
