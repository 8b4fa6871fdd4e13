"""``pyvmm bench containers``: pyvmm-runtime beside runc and crun, driven the same way.

Three rows per runtime, medians of ``runs`` whole commands timed from outside:

- ``podman run --rm`` of the workload image (scripts/build_images.py's OCI archive,
  loaded into a private Podman store) running ``/bin/true``: what a user of an
  engine sees;
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
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmm.container.bench import flat_rootfs, oci_bundle
from vmm.container.state import Store

IMAGE = "localhost/pyvmm-workload:latest"
# Podman's defaults raise rlimits from the caller's, which needs CAP_SYS_RESOURCE;
# a private containers.conf keeps them at what root here may set, and uses cgroupfs.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
REPO = Path(__file__).resolve().parents[2]


def runtimes() -> dict[str, str]:
    """pyvmm-runtime (next to this interpreter), runc and crun, those installed."""
    found = {"pyvmm-runtime": shutil.which("pyvmm-runtime", path=os.path.dirname(sys.executable))}
    found.update({name: shutil.which(name) for name in ("runc", "crun")})
    return {k: v for k, v in found.items() if v}


@dataclass(frozen=True)
class PrivatePodman:
    """A Podman of our own: its store under a directory of ours, its run root, and a
    cgroup parent no other Podman on the machine uses."""

    argv: list[str]  # podman and its global options
    env: dict[str, str]
    run_root: str
    cgroup_parent: str  # for ``podman run --cgroup-parent``: conmon's cgroup goes there too

    def command(self, subcommand: str, *args: str, runtime: str | None = None) -> list[str]:
        """``podman [--runtime RUNTIME] SUBCOMMAND ARGS``, a container it makes placed in
        this Podman's cgroup parent."""
        argv = [*self.argv, *(["--runtime", runtime] if runtime else []), subcommand]
        if subcommand in ("run", "create"):
            argv += ["--cgroup-parent", "/" + self.cgroup_parent]
        return [*argv, *args]

    def cgroups(self) -> list[str]:
        """The cgroup parent's directories, one per hierarchy (none once removed)."""
        import glob

        name = self.cgroup_parent
        return glob.glob(f"/sys/fs/cgroup/{name}") + glob.glob(f"/sys/fs/cgroup/*/{name}")


@contextlib.contextmanager
def private_podman(tmp: Path) -> Iterator[PrivatePodman]:
    """A Podman whose store is under ``tmp``; afterwards, its containers and store are
    reset and its cgroup parent and run root removed.

    The run root is a short directory under /run whatever ``tmp`` is: Podman refuses
    one longer than 50 characters (conmon's socket paths go below it), as a pytest or
    TMPDIR directory may well be. The cgroup parent is ours alone, so that nothing
    another Podman on the machine does (its ``libpod_parent``, the default) is removed
    or counted as ours."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "containers.conf").write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(tmp / "containers.conf")}
    run_root = tempfile.mkdtemp(prefix="pyvmm-podman-", dir="/run")
    argv = ["podman", "--root", str(tmp / "storage"), "--runroot", run_root,
            "--storage-driver", "overlay"]  # fmt: skip
    podman = PrivatePodman(argv, env, run_root, os.path.basename(run_root))
    try:
        yield podman
    finally:
        subprocess.run([*argv, "system", "reset", "--force"], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL)  # fmt: skip
        for parent in podman.cgroups():
            for d in (f"{parent}/conmon", parent):
                with contextlib.suppress(OSError):  # still in use: the caller's check says so
                    os.rmdir(d)
        if not _mounted_under(run_root):
            shutil.rmtree(run_root, ignore_errors=True)


def _mounted_under(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].startswith(path + "/") for line in f)


def _unified_hidden(argv: list[str]) -> list[str]:
    if not os.path.ismount("/sys/fs/cgroup/unified"):
        return argv
    return ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"', "sh",
            *argv]  # fmt: skip


def _median(commands: list[list[str]], runs: int, env: dict | None = None) -> float:
    """Median wall time of running ``commands`` one after another.

    Errors go to a file, not a pipe: a created container's init keeps the runtime's
    stdio open (an engine's, normally), and reading a pipe would wait for it.
    """
    times = []
    with tempfile.TemporaryFile() as err:
        for _ in range(runs):
            t = time.perf_counter()
            for argv in commands:
                code = subprocess.call(_unified_hidden(argv), env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
                if code != 0:
                    err.seek(0)
                    raise RuntimeError(f"{' '.join(argv[:6])}...: {err.read().decode().strip()}")
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(runs: int = 5) -> dict:
    found = runtimes()
    result: dict = {"runs": runs, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-containers-") as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, REPO / "scripts" / "build_images.py", "--root", tmp / "store",
             "--workload", "/bin/busybox", "--oci-archive", tmp / "image.tar"],
            check=True, capture_output=True,
        )  # fmt: skip
        rootfs = flat_rootfs(Store(tmp / "store"), "workload:latest", tmp / "rootfs")
        bundle = oci_bundle(rootfs, tmp / "bundle", ["/bin/true"], {})
        with private_podman(tmp / "podman") as podman:
            subprocess.run(podman.command("load", "-i", str(tmp / "image.tar")), env=podman.env,
                           check=True, capture_output=True)  # fmt: skip
            for name, path in found.items():
                state = str(tmp / f"state-{name}")
                cid = f"bench-{name}"
                result["rows"][name] = {
                    "podman_run_s": _median(
                        [podman.command("run", "--rm", IMAGE, "/bin/true", runtime=path)],
                        runs, podman.env,
                    ),
                    "create_start_delete_s": _median(
                        [[path, "--root", state, "create", "--bundle", str(bundle), cid],
                         [path, "--root", state, "start", cid],
                         [path, "--root", state, "delete", "--force", cid]],
                        runs,
                    ),
                    "version_s": _median([[path, "--version"]], runs),
                }  # fmt: skip
    return result


def table(result: dict) -> str:
    rows = result["rows"]
    base = rows.get("runc")
    lines = [f"Containers through engines and runtimes (medians of {result['runs']} runs)", "",
             "| runtime | podman run --rm | x runc | create+start+delete | x runc "
             "| --version | x runc |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in rows.items():
        cells = [name]
        for key in ("podman_run_s", "create_start_delete_s", "version_s"):
            cells.append(f"{r[key] * 1000:.0f} ms")
            cells.append(f"{r[key] / base[key]:.2f}" if base else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
