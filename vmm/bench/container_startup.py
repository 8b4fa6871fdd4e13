"""Measuring container start-up: pyvmm beside crun, runc and a bare unshare+chroot.

Every function returns a plain dict (times in seconds) so that ``pyvmm bench`` and
``scripts/bench_container.py`` can print or plot the same numbers. Each measurement is
the median of several runs of a whole process, start to exit, timed from outside; for
pyvmm the record of a run also holds what it measured from inside (``timings``).

The same root filesystem runs everywhere: the image's layers copied into one
directory for crun, runc and chroot, which have no layer store of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from vmm.container.engine import container as lifecycle
from vmm.container.engine.security import Security
from vmm.container.image import images
from vmm.container.store import layers, records
from vmm.container.store.state import Store


def _env(root: Path) -> dict:
    """pyvmm's environment: its state dir, and bytecode caching allowed, as installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYVMM_ROOT"] = str(root)
    return env


def timed_runs(argv: list[str], runs: int, env: dict | None = None, cleanup=None) -> dict:
    """Run ``argv`` ``runs`` times; the median and min wall time and the last output.

    ``cleanup`` runs after each run, outside the timing.
    """
    times, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:4])}...: exit {r.returncode}: {r.stderr.strip()}")
        out = r.stdout.strip()
        if cleanup:
            cleanup()
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs,
            "result": out}  # fmt: skip


def flat_rootfs(store: Store, image_ref: str, dest: Path) -> Path:
    """Copy an image's layers, bottom first, into one directory (the images built by
    scripts/build_images.py have no whiteouts, which a plain copy would not apply)."""
    for digest in images.get(store, image_ref).layers:
        shutil.copytree(layers.layer_dir(store, digest), dest, symlinks=True, dirs_exist_ok=True)
    return dest


def oci_bundle(rootfs: Path, bundle: Path, args: list[str], binds: dict[str, str]) -> Path:
    """An OCI runtime bundle for crun and runc: ``runc spec``'s defaults (the same
    masked paths as pyvmm), no terminal, a cgroup namespace, the ``binds`` (host path:
    container path), and pyvmm's default hardening (capabilities, the seccomp filter,
    the device rules: ``security.py``), so that each runtime does the same work."""
    bundle.mkdir(parents=True, exist_ok=True)
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": False}
    config["process"].update(terminal=False, args=args)
    config["linux"]["namespaces"].append({"type": "cgroup"})
    hardening = Security()
    config["process"]["capabilities"] = hardening.oci_capabilities()
    config["linux"]["seccomp"] = hardening.oci_seccomp()
    config["linux"]["resources"]["devices"] = [asdict(r) for r in hardening.device_rules()]
    for host, target in binds.items():
        config["mounts"].append({"destination": target, "type": "bind", "source": host,
                                 "options": ["rbind", "rw"]})  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def runtime_command(runtime: str, bundle: str, name: str) -> list[str]:
    """``crun run`` or ``runc run`` of an OCI bundle.

    crun refuses a hybrid cgroup layout (controllers in v1, an empty cgroup2 at
    /sys/fs/cgroup/unified); there it runs in a private mount namespace with that
    cgroup2 mount removed, which adds an ``unshare`` to its time."""
    argv = [runtime, "run", "--bundle", bundle, name]
    if runtime == "crun" and os.path.ismount("/sys/fs/cgroup/unified"):
        argv = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified && exec "$@"',
                "sh", *argv]  # fmt: skip
    return argv


def runc_run(bundle: Path, runs: int) -> dict:
    return timed_runs(runtime_command("runc", str(bundle), "pyvmm-bench-runc"), runs)


def crun_run(bundle: Path, runs: int) -> dict:
    return timed_runs(runtime_command("crun", str(bundle), "pyvmm-bench-crun"), runs)


def chroot_floor(rootfs: Path, args: list[str], runs: int) -> dict:
    """The least a container can cost: new namespaces, a fresh /proc, chroot, exec."""
    return timed_runs(["unshare", "-fmpiun", "--mount-proc=" + str(rootfs / "proc"),
                       "chroot", str(rootfs), *args], runs)  # fmt: skip


# Runs a command with cgroup2 mounted over /sys/fs/cgroup in a private mount namespace:
# on a hybrid v1 host pyvmm then takes its cgroup v2 path (with no controllers, so no
# limits), which shows what the v1 cgroup migration costs. The unshare adds its time.
CGROUP2_VIEW = ["unshare", "-m", "sh", "-c", 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"',
                "sh"]  # fmt: skip


def pyvmm_run(pyvmm: list[str], root: Path, image_ref: str, args: list[str],
              volumes: list[str], runs: int, wrapper: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """``pyvmm container run --rm``, whole process; then the same without ``--rm`` to
    read back what pyvmm measured from inside (when each start-up step ended, from
    the run request to the first output) and the cgroup's peak memory. ``pyvmm`` is
    the command (the benchmark's ``pyvmm_command``: the container package knows
    nothing of the benchmark package); ``wrapper`` prefixes it (``CGROUP2_VIEW``)."""
    store, env = Store(root), _env(root)
    run = [*wrapper, *pyvmm, "container", "run"]
    vflags = [f for v in volumes for f in ("-v", v)]
    whole = timed_runs([*run, "--rm", *vflags, image_ref, *args], runs, env)
    inner = []
    for i in range(runs):
        name = f"bench{i}"
        subprocess.run([*run, "--name", name, *vflags, image_ref, *args],
                       env=env, check=True, capture_output=True)  # fmt: skip
        inner.append(lifecycle.find(store, name))
        lifecycle.remove(store, name)
    steps = {}  # each step's median end, seconds after the run request (see _monitor)
    for key in inner[0].timings:
        values = [r.timings[key] for r in inner if key in r.timings]
        steps[key] = statistics.median(values)
    peaks = [r.peak_memory for r in inner if r.peak_memory is not None]
    return {**whole, "steps": steps, "first_output_s": steps.get("first_output_s"),
            "peak_memory": statistics.median(peaks) if peaks else None}  # fmt: skip


def interpreter_costs(runs: int) -> dict:
    """What stands before pyvmm's own work: the interpreter, click (vmm.cli.group), and the
    container runtime's modules."""
    env = _env(Path("/nonexistent"))
    py = [sys.executable, "-c"]
    subprocess.run(
        [*py, "import vmm.cli.group, vmm.cli.container"], env=env, check=True
    )  # warm caches
    return {
        "python_s": timed_runs([*py, "pass"], runs, env)["median_s"],
        "python_vmm_cli_s": timed_runs([*py, "import vmm.cli.group"], runs, env)["median_s"],
        "python_container_cli_s": timed_runs(
            [*py, "import vmm.cli.group, vmm.cli.container"], runs, env
        )["median_s"],
    }


def cgroup_attach_cost(runs: int, idle_s: float = 0.05) -> dict:
    """Moving a process into a cgroup after the hierarchy has been idle for a while.

    The kernel's cgroup_threadgroup_rwsem makes the first migration after a quiet
    spell wait for an RCU grace period; a container start pays it once.
    """
    from vmm.container.linux import cgroups

    cg = cgroups.for_container(os.urandom(8).hex(), parent="pyvmm-bench")
    cg.create(cgroups.Limits())
    times = []
    try:
        for _ in range(runs):
            sleeper = subprocess.Popen(["sleep", "10"])
            time.sleep(idle_s)
            t = time.perf_counter()
            cg.add(sleeper.pid)
            times.append(time.perf_counter() - t)
            sleeper.kill()
            sleeper.wait()
    finally:
        cg.remove()
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs,
            "cgroup": cg.version}  # fmt: skip


def image_sizes(root: Path) -> dict:
    """Bytes on disk per image, and for all of them with shared layers counted once."""
    store = Store(root)
    found = records.loaded([r for _, r in images.list_images(store)])
    sizes = {r.ref: images.size(store, r) for r in found}
    return {"images": sizes, "total": images.total_size(store, found)}
