"""Engines drive pyvmm-runtime as they drive runc: Podman (through conmon) and
containerd (through its runc shim), each with private storage under the test's tmp
directory and the image scripts/build_images.py writes as an OCI archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from containertest import REPO, mounts_under

from vmm.bench.containers import IMAGE, PrivatePodman, private_podman

RUNTIME = shutil.which("pyvmm-runtime", path=os.path.dirname(sys.executable))
STATE = Path("/run/pyvmm-runtime")  # pyvmm-runtime's default --root, which engines use

pytestmark = [
    pytest.mark.skipif(RUNTIME is None, reason="pyvmm-runtime is not installed"),
    pytest.mark.slow,  # an engine's start and its image load: tens of seconds
]


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


class Podman:
    """Podman on a store of its own under ``tmp``, with a test-only containers.conf
    (this host's root lacks CAP_SYS_RESOURCE, so Podman's default rlimits must be
    lowered; see vmm/bench/containers.py), running pyvmm-runtime, its containers in a
    cgroup parent of their own."""

    def __init__(self, private: PrivatePodman):
        self.private = private

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.private.command(*args, runtime=RUNTIME), capture_output=True,
                              text=True, env=self.private.env, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # fmt: skip

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def podman(tmp_path_factory, archive):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh --all installs it)")
    tmp = tmp_path_factory.mktemp("podman")
    with private_podman(tmp) as private:
        p = Podman(private)
        try:
            p.ok("load", "-i", str(archive))
            yield p
        finally:
            p("rm", "--all", "--force", "--time", "0")
            p("volume", "prune", "--force")
    assert not mounts_under(tmp, Path(private.run_root)), "podman storage left mounted"
    assert not private.cgroups(), "container cgroups left behind"


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
state = "{run}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{run}/containerd.sock"
[ttrpc]
  address = "{run}/containerd-ttrpc.sock"
"""


@pytest.fixture
def containerd(tmp_path, archive):
    """A private containerd (own root, state and sockets), stopped afterwards. Its
    sockets and state are in a short directory under /run, whatever the tmp directory
    is: a socket's path may not pass 104 characters."""
    if shutil.which("containerd") is None:
        pytest.skip("containerd is not installed")
    run = Path(tempfile.mkdtemp(prefix="pyvmm-containerd-", dir="/run"))
    (tmp_path / "config.toml").write_text(CONTAINERD_CONFIG.format(tmp=tmp_path, run=run))
    log = open(tmp_path / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", tmp_path / "config.toml"],
                              stdout=log, stderr=log)  # fmt: skip
    ctr = ["ctr", "--address", str(run / "containerd.sock")]
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
        mounts = sorted(mounts_under(tmp_path, run), key=lambda m: m[1], reverse=True)
        for _, where in mounts:
            subprocess.run(["umount", where], check=False)  # containerd's own
        if not mounts_under(run):
            shutil.rmtree(run)
    assert not mounts_under(tmp_path, run)


def test_containerd_runs_an_imported_image_with_pyvmm_runtime(containerd):
    name = f"pyvmm-ctr-{os.getpid()}-{os.urandom(3).hex()}"  # runc's state is machine-wide
    r = subprocess.run(
        [*containerd, "run", "--rm", "--runc-binary", RUNTIME, IMAGE, name,
         "/bin/sh", "-c", "echo from containerd; cat /proc/1/cmdline"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from containerd\ncat\0/proc/1/cmdline\0"  # PID 1 of its namespace
    assert not (STATE / name).exists() and not list(Path("/run/containerd/runc").glob(f"*/{name}"))
