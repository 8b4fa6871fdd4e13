"""Engines drive pyvmm-runtime as they drive runc: Podman (through conmon) and
containerd (through its runc shim), each with private storage under the test's tmp
directory and the image scripts/build_images.py writes as an OCI archive."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
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


def test_podman_read_only_and_tmpfs(podman):
    """Podman sends runc's ``tmpcopyup`` for --tmpfs and --read-only's /tmp: the tmpfs
    starts with the image's content there, and the rest of the root is read-only."""
    script = ("head -1 /etc/passwd; echo x > /etc/y && cat /etc/y; touch /z 2>/dev/null"
              " || echo root read-only; echo t > /tmp/t && cat /tmp/t")  # fmt: skip
    out = podman.ok("run", "--rm", "--read-only", "--tmpfs", "/etc", IMAGE, "/bin/sh", "-c", script)
    assert out == "root:x:0:0:root:/root:/bin/sh\nx\nroot read-only\nt\n"


def test_podman_gives_126_and_127_as_with_runc(podman):
    """Podman reads the runtime's words (Go's exec.LookPath's, which runc passes on):
    "permission denied" is 126, "executable file not found" 127."""
    assert podman("run", "--rm", IMAGE, "/etc/passwd").returncode == 126
    assert podman("run", "--rm", IMAGE, "nosuchcmd").returncode == 127


def test_buildah_bud_builds_a_two_step_containerfile(podman, tmp_path):
    """buildah (on the same private store as Podman) runs each RUN step with
    pyvmm-runtime; its config asks for ambient capabilities with no inheritable set."""
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    (tmp_path / "Containerfile").write_text(
        f"FROM {IMAGE}\nRUN echo one > /one\nRUN cat /one > /two && echo two >> /two\n"
    )
    tag = f"localhost/pyvmm-built-{os.getpid()}:latest"
    buildah = [*podman.private.argv, "bud", "--runtime", RUNTIME, "-t", tag, str(tmp_path)]
    buildah[0] = "buildah"
    r = subprocess.run(buildah, capture_output=True, text=True, env=podman.private.env,
                       stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip
    try:
        assert r.returncode == 0, r.stderr
        assert podman.ok("run", "--rm", tag, "cat", "/two") == "one\ntwo\n"
    finally:
        podman("rmi", "--force", tag)


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


@contextlib.contextmanager
def private_containerd(tmp: Path) -> Iterator[tuple[Path, Path]]:
    """A containerd of our own (root under ``tmp``, state and sockets in a short
    directory under /run whatever ``tmp`` is: a socket's path may not pass 104
    characters); yields (its socket, that directory). Stopped afterwards, the mounts
    it left unmounted and the directory removed."""
    run = Path(tempfile.mkdtemp(prefix="pyvmm-ctd-", dir="/run"))
    (tmp / "config.toml").write_text(CONTAINERD_CONFIG.format(tmp=tmp, run=run))
    log = open(tmp / "containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", tmp / "config.toml"],
                              stdout=log, stderr=log)  # fmt: skip
    try:
        _wait_for(["ctr", "--address", str(run / "containerd.sock"), "version"],
                  tmp / "containerd.log")  # fmt: skip
        yield run / "containerd.sock", run
    finally:
        daemon.terminate()
        daemon.wait(10)
        log.close()
        _unmount_all(tmp, run)
        if not mounts_under(run):
            shutil.rmtree(run)
    assert not mounts_under(tmp, run)


def _wait_for(probe: list[str], log: Path, seconds: float = 30) -> None:
    """Until ``probe`` succeeds: a daemon's start; its ``log`` if it never does."""
    deadline = time.monotonic() + seconds
    while subprocess.run(probe, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _unmount_all(*paths: Path) -> None:
    """Unmount what a daemon left mounted under ``paths``, the deepest first."""
    for _, where in sorted(mounts_under(*paths), key=lambda m: m[1], reverse=True):
        subprocess.run(["umount", "-l", where], check=False)


@pytest.fixture
def containerd(tmp_path, archive):
    if shutil.which("containerd") is None:
        pytest.skip("containerd is not installed")
    with private_containerd(tmp_path) as (socket, _):
        ctr = ["ctr", "--address", str(socket)]
        subprocess.run([*ctr, "image", "import", archive], check=True, capture_output=True)
        yield ctr


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


def test_containerd_task_metrics_are_the_containers_own(containerd):
    """``ctr tasks metrics`` reads the container's cgroup (cpuacct on v1): a busy loop's
    CPU time, not the parent's; an idle container beside it has next to none."""
    names = {kind: f"pyvmm-{kind}-{os.getpid()}-{os.urandom(3).hex()}" for kind in ("busy", "idle")}
    commands = {"busy": ["/bin/sh", "-c", "while :; do :; done"], "idle": ["sleep", "60"]}
    try:
        for kind, name in names.items():
            argv = [*containerd, "run", "-d", "--runc-binary", RUNTIME, IMAGE, name]
            subprocess.run([*argv, *commands[kind]], check=True, capture_output=True, timeout=60)
        time.sleep(1)
        usage = {}
        for kind, name in names.items():
            out = subprocess.run([*containerd, "tasks", "metrics", name], check=True,
                                 capture_output=True, text=True, timeout=30).stdout  # fmt: skip
            rows = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
            usage[kind] = int(rows.get("cpuacct.usage") or rows["cpu.usage_usec"])  # v1, v2
        assert usage["busy"] > 10 * max(usage["idle"], 1), usage
    finally:
        for name in names.values():
            subprocess.run([*containerd, "tasks", "kill", "-s", "KILL", name], capture_output=True)
            subprocess.run([*containerd, "tasks", "delete", "--force", name], capture_output=True)
            subprocess.run([*containerd, "containers", "delete", name], capture_output=True)


# The `runtimes` entry docs/containers.md documents, as a test's daemon.json.
DAEMON_JSON = {"runtimes": {"pyvmm": {"path": RUNTIME}}}


def _blob(descriptor: dict) -> str:
    return "blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")


def _docker_archive(archive: Path, tmp: Path) -> Path:
    """The OCI archive with the ``manifest.json`` of ``docker save``'s format added,
    which is all Docker 20.10's ``docker load`` reads (it cannot load OCI archives)."""
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{digest}").read())
    entry = [{"Config": _blob(manifest["config"]), "RepoTags": [IMAGE],
              "Layers": [_blob(layer) for layer in manifest["layers"]]}]  # fmt: skip
    data = json.dumps(entry).encode()
    shutil.copy(archive, tmp / "docker.tar")
    with tarfile.open(tmp / "docker.tar", "a") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return tmp / "docker.tar"


class Docker:
    """``docker`` against the private daemon; containers run by pyvmm-runtime."""

    def __init__(self, socket: Path):
        self.argv = [shutil.which("docker"), "-H", f"unix://{socket}"]

    def __call__(
        self, *args: str, input: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess:
        if args[0] == "run":
            args = ("run", "--runtime", "pyvmm", *args[1:])
        return subprocess.run([*self.argv, *args], capture_output=True, text=True,
                              timeout=timeout, input=input)  # fmt: skip

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def docker(tmp_path_factory, archive):
    """A dockerd of our own: its --data-root under the test's tmp directory, its
    --exec-root and socket in a short directory under /run, its own containerd, a
    cgroup parent of its own, and no bridge or iptables rules (nothing on the host's
    network changes); stopped and everything removed afterwards."""
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        pytest.skip("dockerd is not installed (scripts/setup.sh --all installs docker.io)")
    tmp = tmp_path_factory.mktemp("docker")
    # Its identity key in the test's directory (not the default /etc/docker/key.json).
    (tmp / "daemon.json").write_text(
        json.dumps({**DAEMON_JSON, "deprecated-key-path": str(tmp / "key.json")})
    )
    plugins = Path("/run/docker/plugins")  # dockerd's, whatever --exec-root says
    made = [d for d in (plugins.parent, plugins) if not d.exists()]
    with private_containerd(tmp) as (containerd, run):
        parent = run.name
        log = open(tmp / "dockerd.log", "w")
        daemon = subprocess.Popen(
            ["dockerd", "--config-file", tmp / "daemon.json", "--data-root", tmp / "data",
             "--exec-root", run / "exec", "--pidfile", run / "docker.pid",
             "-H", f"unix://{run}/docker.sock", "--containerd", containerd,
             "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--cgroup-parent", parent],
            stdout=log, stderr=log,
        )  # fmt: skip
        d = Docker(run / "docker.sock")
        try:
            _wait_for([*d.argv, "version"], tmp / "dockerd.log")
            d.ok("load", "-i", str(_docker_archive(archive, tmp)))
            yield d
        finally:
            containers = d("ps", "-aq").stdout.split()
            if containers:
                d("rm", "--force", *containers)
            daemon.terminate()
            daemon.wait(30)
            log.close()
            _unmount_all(tmp, run)
            left = glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}")
            for path in [*left, *reversed(made)]:
                with contextlib.suppress(OSError):  # still in use: the check below says so
                    os.rmdir(path)
    assert not mounts_under(tmp), "docker storage left mounted"
    assert not [p for p in left if os.path.exists(p)], "container cgroups left behind"
    assert not [d for d in made if d.exists()], "dockerd's /run/docker left behind"


def test_docker_run_prints_and_returns_the_status(docker):
    r = docker("run", "--rm", IMAGE, "/bin/sh", "-c", "echo hello from pyvmm-runtime; exit 3")
    assert (r.returncode, r.stdout) == (3, "hello from pyvmm-runtime\n"), r.stderr


def test_docker_detach_exec_logs_stop_kill(docker):
    cid = docker.ok("run", "-d", IMAGE, "/bin/sh", "-c", "echo started; exec sleep 60").strip()
    out = docker.ok("exec", cid, "/bin/sh", "-c", "echo in-exec; cat /proc/1/cmdline")
    assert out.startswith("in-exec\nsleep")
    deadline = time.monotonic() + 5
    while "started" not in docker.ok("logs", cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert docker.ok("logs", cid) == "started\n"
    docker.ok("stop", "--time", "1", cid)  # sleep ignores SIGTERM as PID 1: killed after 1 s
    assert docker.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", cid) == (
        "exited 137\n"
    )
    docker.ok("rm", cid)
    cid = docker.ok("run", "-d", IMAGE, "/bin/sh", "-c", "trap 'exit 7' USR1; sleep 60 & wait")
    cid = cid.strip()
    time.sleep(0.5)  # the trap set
    docker.ok("kill", "--signal", "USR1", cid)
    assert docker.ok("wait", cid) == "7\n"
    docker.ok("rm", cid)


def test_docker_memory_volume_read_only_and_tmpfs(docker, tmp_path):
    limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    if not os.path.exists(limit):
        limit = "/sys/fs/cgroup/memory.max"
    assert docker.ok("run", "--rm", "--memory", "64m", IMAGE, "cat", limit) == f"{64 << 20}\n"
    (tmp_path / "f").write_text("from the host\n")
    script = "cat /b/f; touch /b/g 2>/dev/null || echo read-only"
    out = docker.ok("run", "--rm", "-v", f"{tmp_path}:/b:ro", IMAGE, "/bin/sh", "-c", script)
    assert out == "from the host\nread-only\n"
    script = "touch /x 2>/dev/null || echo root read-only; echo data > /tmp/y && cat /tmp/y"
    out = docker.ok("run", "--rm", "--read-only", "--tmpfs", "/tmp", IMAGE, "/bin/sh", "-c", script)
    assert out == "root read-only\ndata\n"


def test_docker_pause_cpus_terminal_and_stdin(docker):
    cid = docker.ok("run", "-d", IMAGE, "sleep", "60").strip()
    try:
        docker.ok("pause", cid)
        assert docker.ok("inspect", "--format", "{{.State.Status}}", cid) == "paused\n"
        docker.ok("unpause", cid)
        assert docker.ok("inspect", "--format", "{{.State.Status}}", cid) == "running\n"
        assert docker.ok("exec", "-t", cid, "tty").strip().startswith("/dev/pts/")
    finally:
        docker("rm", "--force", cid)
    quota = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"
    out = docker.ok("run", "--rm", "--cpus", "0.5", IMAGE, "/bin/sh", "-c", quota)
    assert out.split()[0] == "50000"
    assert docker.ok("run", "--rm", "-t", IMAGE, "tty").strip() == "/dev/pts/0"
    r = docker("run", "--rm", "-i", IMAGE, "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr


def _cpu_percents(engine, *ids: str) -> list[float]:
    out = engine.ok("stats", "--no-stream", "--format", "{{.CPUPerc}}", *ids)
    return [float(line.strip().rstrip("%")) for line in out.splitlines()]


def test_docker_and_podman_stats_show_each_containers_own_cpu(docker, podman):
    """The init joins every hierarchy (cpuacct too): an engine's stats for a busy loop
    show its CPU, for an idle one next to it (almost) none; before, both showed the
    parent's figures."""
    for engine in (docker, podman):
        busy = engine.ok("run", "-d", IMAGE, "/bin/sh", "-c", "while :; do :; done").strip()
        idle = engine.ok("run", "-d", IMAGE, "sleep", "60").strip()
        try:
            time.sleep(2)
            busy_cpu, idle_cpu = _cpu_percents(engine, busy, idle)
            assert busy_cpu > 5 * max(idle_cpu, 0.5), (busy_cpu, idle_cpu)
        finally:
            engine("rm", "--force", busy, idle)
