"""Engines drive pyvmm-runtime as they drive runc: Podman (through conmon) and
containerd (through its runc shim), each with private storage under the test's tmp
directory and the image scripts/build_images.py writes as an OCI archive."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from containertest import REPO

from vmm.bench.containers import IMAGE, podman_parents, private_podman, remove_podman_parents

RUNTIME = shutil.which("pyvmm-runtime", path=os.path.dirname(sys.executable))
STATE = Path("/run/pyvmm-runtime")  # pyvmm-runtime's default --root, which engines use

pytestmark = pytest.mark.skipif(RUNTIME is None, reason="pyvmm-runtime is not installed")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("engine-image")
    workload = REPO / "guest" / "workload" / "workload"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "build_images.py", "--root", tmp / "root",
         "--workload", workload if workload.is_file() else "/bin/busybox",
         "--oci-archive", tmp / "workload.tar"],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp / "workload.tar"


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def _cgroups() -> set[str]:
    return set(glob.glob("/sys/fs/cgroup/*/libpod_parent/libpod-*"))


class Podman:
    """Podman on a store of its own under ``tmp``, with a test-only containers.conf
    (this host's root lacks CAP_SYS_RESOURCE, so Podman's default rlimits must be
    lowered; see vmm/bench/containers.py), running pyvmm-runtime."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        base, self.env = private_podman(tmp)
        self.base = [*base, "--runtime", RUNTIME]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def podman(tmp_path_factory, archive):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh installs it)")
    tmp = tmp_path_factory.mktemp("podman")
    cgroups_before = _cgroups()
    parents = podman_parents()
    p = Podman(tmp)
    try:
        p.ok("load", "-i", str(archive))
        yield p
    finally:
        p("rm", "--all", "--force", "--time", "0")
        p("volume", "prune", "--force")
        p("system", "reset", "--force")
        remove_podman_parents(parents)
    assert not _mounts_under(tmp), "podman storage left mounted"
    assert _cgroups() <= cgroups_before, "container cgroups left behind"


def test_podman_run_rm_prints_and_returns_the_status(podman):
    r = podman("run", "--rm", IMAGE, "/bin/sh", "-c", "echo hello from pyvmm-runtime; exit 3")
    assert (r.returncode, r.stdout) == (3, "hello from pyvmm-runtime\n"), r.stderr


def test_podman_terminal(podman):
    out = podman.ok("run", "--rm", "-t", IMAGE, "/bin/sh", "-c", "tty")
    assert out.strip() == "/dev/pts/0"


def test_podman_detach_exec_logs_stop(podman):
    cid = podman.ok("run", "-d", IMAGE, "/bin/sh", "-c", "echo started; exec sleep 60").strip()
    try:
        assert (STATE / cid / "state.json").is_file()  # pyvmm-runtime holds it
        out = podman.ok("exec", cid, "/bin/sh", "-c", "echo in-exec; cat /proc/1/cmdline")
        assert out.startswith("in-exec\nsleep")
        assert podman.ok("exec", "-t", cid, "tty").strip().startswith("/dev/pts/")
        deadline = time.monotonic() + 5
        while "started" not in podman.ok("logs", cid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert podman.ok("logs", cid) == "started\n"
        podman.ok("stop", "--time", "1", cid)
        assert podman.ok("inspect", "--format", "{{.State.Status}}", cid).strip() == "exited"
    finally:
        podman("rm", "--force", "--time", "0", cid)
    assert not (STATE / cid).exists()


def test_podman_memory_limit(podman):
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
        " || cat /sys/fs/cgroup/memory.max"
    )
    out = podman.ok("run", "--rm", "--memory", "64m", IMAGE, "/bin/sh", "-c", script)
    assert out.strip() == str(64 << 20)


def test_podman_volume_and_bind_mount(podman, tmp_path):
    (tmp_path / "f").write_text("from the host\n")
    podman.ok("volume", "create", "pyvmmvol")
    try:
        script = "cat /b/f; echo kept > /vol/x"
        out = podman.ok("run", "--rm", "-v", "pyvmmvol:/vol", "-v", f"{tmp_path}:/b:ro", IMAGE,
                        "/bin/sh", "-c", script)  # fmt: skip
        assert out == "from the host\n"
        out = podman.ok("run", "--rm", "-v", "pyvmmvol:/vol", IMAGE, "/bin/cat", "/vol/x")
        assert out == "kept\n"
    finally:
        podman("volume", "rm", "--force", "pyvmmvol")


CONTAINERD_CONFIG = """\
version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{tmp}/containerd.sock"
[ttrpc]
  address = "{tmp}/containerd-ttrpc.sock"
"""


@pytest.fixture
def containerd(tmp_path, archive):
    """A private containerd (own root, state and socket), stopped afterwards."""
    if shutil.which("containerd") is None:
        pytest.skip("containerd is not installed")
    (tmp_path / "config.toml").write_text(CONTAINERD_CONFIG.format(tmp=tmp_path))
    log = open(tmp_path / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", tmp_path / "config.toml"],
                              stdout=log, stderr=log)  # fmt: skip
    ctr = ["ctr", "--address", str(tmp_path / "containerd.sock")]
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "containerd.log").read_text()
            time.sleep(0.1)
        subprocess.run([*ctr, "image", "import", archive], check=True, capture_output=True)
        yield ctr
    finally:
        daemon.terminate()
        daemon.wait(10)
        log.close()
        for mount in sorted(_mounts_under(tmp_path), reverse=True):  # containerd's own
            subprocess.run(["umount", mount], check=False)
    assert not _mounts_under(tmp_path)


def test_containerd_runs_an_imported_image_with_pyvmm_runtime(containerd):
    r = subprocess.run(
        [*containerd, "run", "--rm", "--runc-binary", RUNTIME, IMAGE, "pyvmm-ctr-test",
         "/bin/sh", "-c", "echo from containerd; cat /proc/1/cmdline"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from containerd\ncat\0/proc/1/cmdline\0"  # PID 1 of its namespace
    assert not list(STATE.glob("pyvmm-ctr-test")) and not list(
        Path("/run/containerd/runc").glob("*/pyvmm-ctr-test")
    )
