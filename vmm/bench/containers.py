"""``pyvmm bench containers``: pyvmm-runtime beside runc and crun, driven the same way.

Four rows per runtime, medians of ``runs`` whole commands timed from outside, the
runtimes in turn round after round:

- ``podman run --rm`` of the workload image (scripts/build_images.py's OCI archive,
  loaded into a private Podman store) running ``/bin/true``: what a user of an
  engine sees;
- ``docker run --rm`` of the same image on a private dockerd (``private_docker``:
  its own containerd and network namespace, the runtimes declared in its
  daemon.json), containers on its default bridge as a user's are;
- ``create`` + ``start`` + ``delete`` on one bundle (the same image's files): the
  three runtime calls an engine makes for a short container;
- ``--version``: the bare cost of starting the runtime, which an engine pays on
  every call (for pyvmm-runtime, the Python interpreter and its imports).

Every command runs in a private mount namespace with /sys/fs/cgroup/unified
unmounted, which crun 1.8.1 needs on this kind of host (cgroup "hybrid"): the three
runtimes pay for the same ``unshare``.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vmm.bench.container_startup import flat_rootfs, oci_bundle
from vmm.container.store.state import Store

IMAGE = "localhost/pyvmm-workload:latest"
# Podman's defaults raise rlimits from the caller's, which needs CAP_SYS_RESOURCE;
# a private containers.conf keeps them at what root here may set, and uses cgroupfs.
# Its tmp_dir (the "alive" file whose absence makes Podman reset every container to
# "created", its events log) and its locks (by default shared memory, /dev/shm/
# libpod_lock, one for the machine) are the Podman's own: with the defaults, another
# Podman's `system reset` (another test's, another session's) wiped this one's state
# in the middle of its tests.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{run_root}/libpod"
lock_type = "file"
"""
REPO = Path(__file__).resolve().parents[2]


def runtimes() -> dict[str, str]:
    """pyvmm-runtime (next to this interpreter), runc and crun, those installed."""
    found = {"pyvmm-runtime": shutil.which("pyvmm-runtime", path=os.path.dirname(sys.executable))}
    found.update({name: shutil.which(name) for name in ("runc", "crun")})
    return {k: v for k, v in found.items() if v}


@dataclass(frozen=True)
class PrivatePodman:
    """A Podman of our own: its store under a directory of ours, its run root, a
    cgroup parent no other Podman on the machine uses and, if asked for, a network
    namespace of its own (``netns``: the pid holding it, entered by ``prefix``)."""

    argv: list[str]  # podman and its global options
    env: dict[str, str]
    run_root: str
    cgroup_parent: str  # for ``podman run --cgroup-parent``: conmon's cgroup goes there too
    prefix: list[str] = field(default_factory=list)  # nsenter into ``netns``, or nothing
    netns: int | None = None

    def command(self, subcommand: str, *args: str, runtime: str | None = None) -> list[str]:
        """``podman [--runtime RUNTIME] SUBCOMMAND ARGS``, a container it makes placed in
        this Podman's cgroup parent."""
        argv = [*self.prefix, *self.argv, *(["--runtime", runtime] if runtime else []),
                subcommand]  # fmt: skip
        if subcommand in ("run", "create"):
            argv += ["--cgroup-parent", "/" + self.cgroup_parent]
        return [*argv, *args]

    def cgroups(self) -> list[str]:
        """The cgroup parent's directories, one per hierarchy (none once removed)."""
        return cgroup_dirs(self.cgroup_parent)


def cgroup_dirs(name: str) -> list[str]:
    """The top-level cgroup ``name``'s directories, one per hierarchy (v1 and v2)."""
    return glob.glob(f"/sys/fs/cgroup/{name}") + glob.glob(f"/sys/fs/cgroup/*/{name}")


@contextlib.contextmanager
def network_namespace() -> Iterator[int]:
    """A network namespace of our own, its loopback up, held by a sleeping process
    whose pid is yielded (``nsenter --net=/proc/PID/ns/net`` enters it); the
    namespace, and whatever an engine made in it (bridge, veths, iptables chains),
    goes when that process is killed afterwards."""
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c",
                               "ip link set lo up && echo up && exec sleep infinity"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        if holder.stdout.readline() != "up\n":
            raise RuntimeError("could not make a network namespace (unshare --net)")
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


@contextlib.contextmanager
def private_podman(tmp: Path, own_network: bool = False) -> Iterator[PrivatePodman]:
    """A Podman whose store is under ``tmp``; afterwards, its containers and store are
    reset and its cgroup parent and run root removed.

    The run root is a short directory under /run whatever ``tmp`` is: Podman refuses
    one longer than 50 characters (conmon's socket paths go below it), as a pytest or
    TMPDIR directory may well be. The cgroup parent is ours alone, so that nothing
    another Podman on the machine does (its ``libpod_parent``, the default) is removed
    or counted as ours. ``own_network``: every podman command runs in a network
    namespace of ours, where netavark's bridge and iptables chains (for its default
    network and ``-p``) are made and die; without it they are the host's (the caller
    runs podman in a namespace of its own, or needs the host's loopback)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf")}
    with contextlib.ExitStack() as stack:
        netns = stack.enter_context(network_namespace()) if own_network else None
        prefix = ["nsenter", f"--net=/proc/{netns}/ns/net"] if netns else []
        run_root = tempfile.mkdtemp(prefix="pyvmm-podman-", dir="/run")
        (tmp / "containers.conf").write_text(CONTAINERS_CONF.format(run_root=run_root))
        argv = ["podman", "--root", str(tmp / "storage"), "--runroot", run_root,
                "--storage-driver", "overlay"]  # fmt: skip
        podman = PrivatePodman(argv, env, run_root, os.path.basename(run_root), prefix, netns)
        try:
            yield podman
        finally:
            subprocess.run([*prefix, *argv, "system", "reset", "--force"], env=env,
                           capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip
            for parent in podman.cgroups():
                for d in (f"{parent}/conmon", parent):
                    with contextlib.suppress(OSError):  # still in use: the caller's check says so
                        os.rmdir(d)
            if not _mounted_under(run_root):
                shutil.rmtree(run_root, ignore_errors=True)


def _mounted_under(path: str) -> bool:
    return bool(_mounts_under(Path(path)))


def _mounts_under(*paths: Path) -> list[str]:
    """The mount points strictly below ``paths``, the deepest first."""
    tops = [f"{p}/" for p in paths]
    with open("/proc/self/mountinfo") as f:
        found = [line.split()[4] for line in f]
    return sorted((m for m in found if m.startswith(tuple(tops))), reverse=True)


def _unmount_all(*paths: Path) -> None:
    """Unmount what a daemon left mounted under ``paths``, the deepest first."""
    for where in _mounts_under(*paths):
        subprocess.run(["umount", "-l", where], check=False)


def _wait_for(probe: list[str], log: Path, seconds: float = 60) -> None:
    """Until ``probe`` succeeds: a daemon's start; its ``log`` if it never does."""
    deadline = time.monotonic() + seconds
    while subprocess.run(probe, capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{probe[0]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


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
        if not _mounts_under(run):
            shutil.rmtree(run)


def _blob(descriptor: dict) -> str:
    return "blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")


def docker_archive(archive: Path, dest: Path) -> Path:
    """``archive`` (an OCI archive) with the ``manifest.json`` of ``docker save``'s
    format added, which ``docker load`` reads, as ``dest``."""
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        digest = index["manifests"][0]["digest"].removeprefix("sha256:")
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{digest}").read())
    entry = [{"Config": _blob(manifest["config"]), "RepoTags": [IMAGE],
              "Layers": [_blob(layer) for layer in manifest["layers"]]}]  # fmt: skip
    data = json.dumps(entry).encode()
    shutil.copy(archive, dest)
    with tarfile.open(dest, "a") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return dest


@dataclass(frozen=True)
class PrivateDocker:
    """A dockerd of our own: ``argv`` is ``docker`` and the option naming its socket;
    ``pid`` its process, in a network namespace of its own."""

    argv: list[str]
    pid: int
    cgroup_parent: str

    def cgroups(self) -> list[str]:
        """The cgroup parent's directories, one per hierarchy (none once removed)."""
        return cgroup_dirs(self.cgroup_parent)


@contextlib.contextmanager
def private_docker(tmp: Path, runtimes: dict[str, str]) -> Iterator[PrivateDocker]:
    """A dockerd of our own, ``runtimes`` (name: path) declared in its daemon.json as
    docs/containers.md says: its --data-root under ``tmp``, its --exec-root and socket
    in a short directory under /run, its own containerd and cgroup parent, and a
    network namespace of its own (``unshare --net``), so that its bridge, veths and
    iptables chains (``-p``) live and die there and the host's network is untouched.
    Stopped and everything removed afterwards; the caller checks ``cgroups()``."""
    tmp.mkdir(parents=True, exist_ok=True)
    # Its identity key in the test's directory (not the default /etc/docker/key.json).
    config = {"runtimes": {n: {"path": p} for n, p in runtimes.items()},
              "deprecated-key-path": str(tmp / "key.json")}  # fmt: skip
    (tmp / "daemon.json").write_text(json.dumps(config))
    plugins = Path("/run/docker/plugins")  # dockerd's, whatever --exec-root says
    made = [d for d in (plugins.parent, plugins) if not d.exists()]
    with private_containerd(tmp) as (containerd, run):
        log = open(tmp / "dockerd.log", "w")
        # The namespace's loopback up first: docker-proxy listens there for -p.
        daemon = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             "dockerd", "--config-file", tmp / "daemon.json", "--data-root", tmp / "data",
             "--exec-root", run / "exec", "--pidfile", run / "docker.pid",
             "-H", f"unix://{run}/docker.sock", "--containerd", containerd,
             "--cgroup-parent", run.name],
            stdout=log, stderr=log,
        )  # fmt: skip
        docker = PrivateDocker([shutil.which("docker") or "docker", "-H", f"unix://{run}/docker.sock"],
                               daemon.pid, run.name)  # fmt: skip
        try:
            _wait_for([*docker.argv, "version"], tmp / "dockerd.log")
            yield docker
        finally:
            containers = subprocess.run([*docker.argv, "ps", "-aq"], capture_output=True,
                                        text=True).stdout.split()  # fmt: skip
            if containers:
                subprocess.run([*docker.argv, "rm", "--force", *containers], capture_output=True)
            daemon.terminate()
            daemon.wait(30)
            log.close()
            _unmount_all(tmp, run)
            for path in [*docker.cgroups(), *reversed(made)]:
                with contextlib.suppress(OSError):  # still in use: the caller's check says so
                    os.rmdir(path)


def _unified_hidden(argv: list[str]) -> list[str]:
    if not os.path.ismount("/sys/fs/cgroup/unified"):
        return argv
    return ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"', "sh",
            *argv]  # fmt: skip


def _timed(commands: list[list[str]], err, env: dict | None = None) -> float:
    """Wall time of running ``commands`` one after another.

    Errors go to a file, not a pipe: a created container's init keeps the runtime's
    stdio open (an engine's, normally), and reading a pipe would wait for it.
    """
    t = time.perf_counter()
    for argv in commands:
        err.seek(0)
        err.truncate()
        code = subprocess.call(_unified_hidden(argv), env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv[:6])}...: {err.read().decode().strip()}")
    return time.perf_counter() - t


ROWS = ("podman_run_s", "docker_run_s", "create_start_delete_s", "version_s")
HEADINGS = ("podman run --rm", "docker run --rm", "create+start+delete", "--version")


def measure(runs: int = 5) -> dict:
    """Every row of every runtime once a round, the runtimes in turn, ``runs`` rounds
    after one not counted (caches, the engines' first-use work): a change in the
    machine's load falls on every runtime alike. A row a runtime cannot do (crun under
    Docker: its shim, outside our mount namespace, sees the hybrid hierarchy) is
    reported as the error instead of a time."""
    found = runtimes()
    result: dict = {"runs": runs, "rows": {name: {} for name in found}, "errors": {}}
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="pyvmm-bench-containers-"))
        )
        subprocess.run(
            [sys.executable, REPO / "scripts" / "build_images.py", "--root", tmp / "store",
             "--workload", "/bin/busybox", "--oci-archive", tmp / "image.tar"],
            check=True, capture_output=True,
        )  # fmt: skip
        rootfs = flat_rootfs(Store(tmp / "store"), "workload:latest", tmp / "rootfs")
        bundle = oci_bundle(rootfs, tmp / "bundle", ["/bin/true"], {})
        podman = stack.enter_context(private_podman(tmp / "podman", own_network=True))
        subprocess.run(podman.command("load", "-i", str(tmp / "image.tar")), env=podman.env,
                       check=True, capture_output=True)  # fmt: skip
        # Docker knows runc by that name already; the others are declared.
        docker = stack.enter_context(
            private_docker(tmp / "docker", {n: p for n, p in found.items() if n != "runc"})
        )
        archive = docker_archive(tmp / "image.tar", tmp / "docker.tar")
        subprocess.run([*docker.argv, "load", "-i", str(archive)], check=True, capture_output=True)
        commands: dict[str, dict[str, tuple]] = {}
        for name, path in found.items():
            runtime = [path, "--root", str(tmp / f"state-{name}")]
            cid = f"bench-{name}"
            commands[name] = {
                "podman_run_s": ([podman.command("run", "--rm", IMAGE, "/bin/true", runtime=path)],
                                 podman.env),
                "docker_run_s": ([[*docker.argv, "run", "--rm", "--runtime", name, IMAGE,
                                   "/bin/true"]], None),
                "create_start_delete_s": ([[*runtime, "create", "--bundle", str(bundle), cid],
                                           [*runtime, "start", cid],
                                           [*runtime, "delete", "--force", cid]], None),
                "version_s": ([[path, "--version"]], None),
            }  # fmt: skip
        times: dict[tuple[str, str], list[float]] = {}
        err = stack.enter_context(tempfile.TemporaryFile())
        for round_ in range(runs + 1):
            for name in found:
                for row, (argvs, env) in commands[name].items():
                    if (name, row) in result["errors"]:
                        continue
                    try:
                        t = _timed(argvs, err, env)
                    except RuntimeError as e:
                        result["errors"][(name, row)] = str(e)
                        continue
                    if round_:
                        times.setdefault((name, row), []).append(t)
        for (name, row), values in times.items():
            result["rows"][name][row] = statistics.median(values)
    result["errors"] = {f"{name} {row}": e for (name, row), e in result["errors"].items()}
    return result


def table(result: dict) -> str:
    rows = result["rows"]
    base = rows.get("runc", {})
    lines = [f"Containers through engines and runtimes (medians of {result['runs']} runs, "
             "runtimes alternated)", "",
             "| runtime | " + " | ".join(f"{h} | x runc" for h in HEADINGS) + " |",
             "|---" * (1 + 2 * len(ROWS)) + "|"]  # fmt: skip
    for name, r in rows.items():
        cells = [name]
        for key in ROWS:
            if key not in r:
                cells += ["failed", "-"]
                continue
            cells.append(f"{r[key] * 1000:.0f} ms")
            cells.append(f"{r[key] / base[key]:.2f}" if base.get(key) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"{where}: {first_line}" for where, e in result["errors"].items()
              for first_line in [e.splitlines()[0][:200]]]  # fmt: skip
    return "\n".join(lines)
