"""Engines drive pyvmm-runtime as they drive runc: Podman (through conmon) and
containerd (through its runc shim), each with private storage under the test's tmp
directory and the image scripts/build_images.py writes as an OCI archive."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from containertest import REPO, mounts_under

from vmm.bench.containers import (
    IMAGE,
    PrivateDocker,
    PrivatePodman,
    docker_archive,
    private_containerd,
    private_docker,
    private_podman,
)

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
    lowered; see vmm/bench/containers.py), running pyvmm-runtime (or ``runtime``), its
    containers in a cgroup parent and a network namespace of their own."""

    def __init__(self, private: PrivatePodman):
        self.private = private

    def __call__(self, *args: str, timeout: float = 60, runtime: str = RUNTIME,
                 input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        return subprocess.run(self.private.command(*args, runtime=runtime), capture_output=True,
                              text=True, env=self.private.env, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip

    def ok(self, *args: str, runtime: str = RUNTIME) -> str:
        r = self(*args, runtime=runtime)
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def podman(tmp_path_factory, archive):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh --all installs it)")
    tmp = tmp_path_factory.mktemp("podman")
    with private_podman(tmp, own_network=True) as private:
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


MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)
CPU_QUOTA = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"
READ_ONLY = ("head -1 /etc/passwd; echo x > /etc/y && cat /etc/y; touch /z 2>/dev/null"
             " || echo root read-only; echo t > /tmp/t && cat /tmp/t")  # fmt: skip


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
    out = podman.ok("run", "--rm", "--read-only", "--tmpfs", "/etc", IMAGE, "/bin/sh", "-c",
                    READ_ONLY)  # fmt: skip
    assert out == "root:x:0:0:root:/root:/bin/sh\nx\nroot read-only\nt\n"


def test_podman_gives_126_and_127_as_with_runc(podman):
    """Podman reads the runtime's words (Go's exec.LookPath's, which runc passes on):
    "permission denied" is 126, "executable file not found" 127."""
    assert podman("run", "--rm", IMAGE, "/etc/passwd").returncode == 126
    assert podman("run", "--rm", IMAGE, "nosuchcmd").returncode == 127


# The flags of issue 17's list that one ``podman run --rm`` shows: flags, command, stdin.
PODMAN_RUNS = {
    "status": ((), ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], None),
    "--memory": (("--memory", "64m"), ["/bin/sh", "-c", MEMORY_LIMIT], None),
    "--cpus": (("--cpus", "0.5"), ["/bin/sh", "-c", CPU_QUOTA], None),
    "--read-only --tmpfs": (("--read-only", "--tmpfs", "/etc"), ["/bin/sh", "-c", READ_ONLY], None),
    "-v": (("-v", "pyvmmflags:/vol"), ["/bin/sh", "-c", "echo kept > /vol/f && cat /vol/f"], None),
    "-p": (("-p", "18082:80"), ["/bin/sh", "-c", "cat /proc/net/dev | grep -c eth0"], None),
    "-t": (("-t",), ["tty"], None),
    "-i": (("-i",), ["cat"], "through stdin\n"),
    "-it": (("-i", "-t"), ["/bin/sh", "-c", "tty; echo typed"], None),
    "126": ((), ["/etc/passwd"], None),
    "127": ((), ["nosuchcmd"], None),
}


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_podman_flags_do_with_pyvmm_runtime_what_they_do_with_runc(podman):
    """Each flag, run by Podman with runc and then with pyvmm-runtime: the same exit
    status and the same output."""
    podman.ok("volume", "create", "pyvmmflags")
    runc = {}
    try:
        for name, (flags, command, stdin) in PODMAN_RUNS.items():
            seen, stderr = {}, {}
            for runtime in ("runc", RUNTIME):
                r = podman("run", "--rm", *flags, IMAGE, *command, runtime=runtime, input=stdin)
                seen[runtime], stderr[runtime] = (r.returncode, r.stdout), r.stderr
            assert seen[RUNTIME] == seen["runc"], (name, seen, stderr)
            runc[name] = seen["runc"]
    finally:
        podman("volume", "rm", "--force", "pyvmmflags")
    assert runc["status"] == (3, "out\n") and runc["-i"] == (0, "through stdin\n")
    assert runc["--memory"] == (0, f"{64 << 20}\n") and runc["--cpus"][1].split()[0] == "50000"
    assert (runc["126"][0], runc["127"][0], runc["-v"]) == (126, 127, (0, "kept\n"))


def _life(podman, runtime: str) -> list[str]:
    """What -d, exec, logs, pause, kill, stop, stats and inspect say of two containers."""
    script = "trap 'exit 7' USR1; echo started; sleep 60 & wait"
    cid = podman.ok("run", "-d", IMAGE, "/bin/sh", "-c", script, runtime=runtime).strip()
    sleeper = podman.ok("run", "-d", IMAGE, "sleep", "60", runtime=runtime).strip()
    status = ("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}")
    try:
        deadline = time.monotonic() + 10
        while "started" not in podman.ok("logs", cid) and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = [podman.ok("exec", cid, "cat", "/proc/1/cmdline"), podman.ok("logs", cid)]
        podman.ok("pause", cid)
        seen.append(podman.ok(*status, cid))
        podman.ok("unpause", cid)
        seen.append(podman.ok(*status, cid))
        stats = podman.ok("stats", "--no-stream", "--format", "{{.PIDs}}", cid)
        seen.append(stats)
        podman.ok("kill", "--signal", "USR1", cid)
        seen.append(podman.ok("wait", cid))
        podman.ok("stop", "--time", "1", sleeper)  # sleep as PID 1 ignores SIGTERM
        seen.append(podman.ok(*status, sleeper))
    finally:
        podman("rm", "--force", "--time", "0", cid, sleeper)
    return seen


@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_podman_container_life_with_pyvmm_runtime_as_with_runc(podman):
    life = {runtime: _life(podman, runtime) for runtime in ("runc", RUNTIME)}
    assert life[RUNTIME] == life["runc"]
    assert life["runc"][1:] == ["started\n", "paused 0\n", "running 0\n", "2\n", "7\n",
                                "exited 137\n"]  # fmt: skip


def _answer(netns_pid: int, port: int) -> str:
    """What a server at 127.0.0.1:``port`` of ``netns_pid``'s network namespace says
    first (retried while the engine sets the port up)."""
    client = ("import socket, sys, time\n"
              "for _ in range(100):\n"
              "    try:\n"
              f"        with socket.create_connection(('127.0.0.1', {port}), timeout=5) as s:\n"
              "            data = s.recv(100)\n"
              "            if data: sys.stdout.write(data.decode()); break\n"
              "    except OSError: pass\n"
              "    time.sleep(0.1)\n")  # fmt: skip
    r = subprocess.run(["nsenter", f"--net=/proc/{netns_pid}/ns/net", sys.executable, "-c", client],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    return r.stdout


SERVER = "while :; do echo pong from pyvmm-runtime | nc -l -p 80; done"


def test_podman_publishes_a_port_in_its_own_network_namespace(podman):
    """``-p``: netavark's bridge and DNAT take a connection to the published port to the
    container's server, inside the private Podman's network namespace."""
    cid = podman.ok("run", "-d", "-p", "18081:80", IMAGE, "/bin/sh", "-c", SERVER).strip()
    try:
        assert _answer(podman.private.netns, 18081) == "pong from pyvmm-runtime\n"
    finally:
        podman("rm", "--force", "--time", "0", cid)


def test_buildah_bud_builds_a_two_step_containerfile(podman, tmp_path):
    """buildah (on the same private store as Podman) runs each RUN step with
    pyvmm-runtime; its config asks for ambient capabilities with no inheritable set."""
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    (tmp_path / "Containerfile").write_text(
        f"FROM {IMAGE}\nRUN echo one > /one\nRUN cat /one > /two && echo two >> /two\n"
    )
    tag = f"localhost/pyvmm-built-{os.getpid()}:latest"
    options = podman.private.argv[1:]  # podman's store options, which buildah shares
    buildah = [*podman.private.prefix, "buildah", *options, "bud", "--runtime", RUNTIME, "-t", tag,
               str(tmp_path)]  # fmt: skip
    r = subprocess.run(buildah, capture_output=True, text=True, env=podman.private.env,
                       stdin=subprocess.DEVNULL, timeout=300)  # fmt: skip
    try:
        assert r.returncode == 0, r.stderr
        assert podman.ok("run", "--rm", tag, "cat", "/two") == "one\ntwo\n"
    finally:
        podman("rmi", "--force", tag)


@pytest.fixture
def containerd(tmp_path, archive):
    if shutil.which("containerd") is None:
        pytest.skip("containerd is not installed")
    with private_containerd(tmp_path) as (socket, run):
        ctr = ["ctr", "--address", str(socket)]
        subprocess.run([*ctr, "image", "import", archive], check=True, capture_output=True)
        yield ctr
    assert not mounts_under(tmp_path, run), "containerd left mounts behind"


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


class Docker:
    """``docker`` against the private daemon; containers run by pyvmm-runtime."""

    def __init__(self, private: PrivateDocker):
        self.private = private

    def __call__(
        self, *args: str, input: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess:
        if args[0] == "run":
            args = ("run", "--runtime", "pyvmm", *args[1:])
        return subprocess.run([*self.private.argv, *args], capture_output=True, text=True,
                              timeout=timeout, input=input)  # fmt: skip

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r.stdout


@pytest.fixture(scope="module")
def docker(tmp_path_factory, archive):
    """A dockerd of our own (vmm/bench/containers.py): its own data, exec root, socket,
    containerd, cgroup parent and network namespace, with the ``runtimes`` entry of
    docs/containers.md; stopped and everything removed afterwards."""
    if shutil.which("dockerd") is None or shutil.which("containerd") is None:
        pytest.skip("dockerd is not installed (scripts/setup.sh --all installs docker.io)")
    tmp = tmp_path_factory.mktemp("docker")
    had_run_docker = Path("/run/docker").exists()  # dockerd makes it whatever --exec-root
    with private_docker(tmp, {"pyvmm": RUNTIME}) as private:
        d = Docker(private)
        d.ok("load", "-i", str(docker_archive(archive, tmp / "docker.tar")))
        yield d
    assert not mounts_under(tmp), "docker storage left mounted"
    assert not private.cgroups(), "container cgroups left behind"
    assert had_run_docker or not Path("/run/docker").exists(), "/run/docker left behind"


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
    out = docker.ok("run", "--rm", "--cpus", "0.5", IMAGE, "/bin/sh", "-c", CPU_QUOTA)
    assert out.split()[0] == "50000"
    assert docker.ok("run", "--rm", "-t", IMAGE, "tty").strip() == "/dev/pts/0"
    r = docker("run", "--rm", "-i", IMAGE, "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr
    # -it as a user types it: docker's own stdin a terminal (script(1)'s pty), which the
    # container's shell reads a line from.
    command = [*docker.private.argv, "run", "--rm", "-it", "--runtime", "pyvmm", IMAGE,
               "/bin/sh", "-c", "tty; read line; echo got $line"]  # fmt: skip
    r = subprocess.run(["script", "-qec", shlex.join(command), "/dev/null"], input="typed\n",
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "/dev/pts/0" in r.stdout and "got typed" in r.stdout, r


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


def test_docker_publishes_a_port_in_its_own_network_namespace(docker):
    """``-p``: Docker's bridge, veth and iptables DNAT (and its docker-proxy) take a
    connection to the published port to the container's server; all of it inside the
    private dockerd's network namespace, where the client connects too."""
    cid = docker.ok("run", "-d", "-p", "18080:80", IMAGE, "/bin/sh", "-c", SERVER).strip()
    try:
        assert "18080" in docker.ok("port", cid)
        assert _answer(docker.private.pid, 18080) == "pong from pyvmm-runtime\n"
    finally:
        docker("rm", "--force", cid)
