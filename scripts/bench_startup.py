#!/usr/bin/env python3
"""Start-up budget: pyvmm's hot commands as whole processes beside ``python -c pass``.

Every command a user or an engine types pays the interpreter's start and the imports
of the modules it reaches before it does any work, so the figure that matters is the
whole process, start to exit, against the interpreter doing nothing. The budget
(docs/bench.md, "Start-up budget"): ``pyvmm boot`` of the bundled tiny guest at most
3x ``python -c pass`` on the same machine, ``pyvmm-runtime --version`` and
``pyvmm-runtime state ID`` (which Podman and containerd call on every step) at most 2x.

Each round runs ``python -c pass`` and then each command once, in turn, so a change in
the machine's load falls on both halves of a pair alike. Reported per command: the
median wall and CPU time (user + system, from ``wait4``), the ratio of the medians,
and the median of the per-round ratios. Bytecode caching is allowed, as installed.
The ``state`` row needs root (it creates a container on a busybox root filesystem,
as tests/container/test_runtime.py does) and the ``boot`` row /dev/kvm; a row that
cannot run here says why.

    .venv/bin/python scripts/bench_startup.py [--runs 21] [--json FILE] [--bin DIR]

``--bin`` names another directory holding ``pyvmm`` and ``pyvmm-runtime`` (another
checkout's install, to compare before and after in one sitting).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET = {"pyvmm boot": 3.0, "pyvmm-runtime --version": 2.0, "pyvmm-runtime state ID": 2.0}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one whole process, its output thrown away; it must succeed."""
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    t = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=devnull)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def busybox_bundle(runtime: str, tmp: Path) -> Path:
    """A bundle whose process is ``sleep``: created, never started, for ``state``."""
    sys.path.insert(0, str(REPO / "scripts"))
    import build_images

    rootfs = tmp / "rootfs"
    rootfs.mkdir()
    build_images.busybox_rootfs(rootfs)
    bundle = tmp / "bundle"
    bundle.mkdir()
    os.symlink(rootfs, bundle / "rootfs")
    subprocess.run([runtime, "spec", "--bundle", bundle], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["sleep", "600"])
    config["linux"]["cgroupsPath"] = f"/pyvmm-bench-startup-{os.getpid()}"
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def commands(bin_dir: Path, tmp: Path) -> tuple[dict[str, list[str]], dict[str, str],
                                               list[list[str]]]:  # fmt: skip
    """The commands to time, the rows left out and why, and the clean-up to run after."""
    runtime = str(bin_dir / "pyvmm-runtime")
    found = {
        "pyvmm boot": [str(bin_dir / "pyvmm"), "boot"],
        "pyvmm-runtime --version": [runtime, "--version"],
    }
    skipped, cleanup = {}, []
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skipped["pyvmm boot"] = "no usable /dev/kvm"
        del found["pyvmm boot"]
    if os.geteuid() != 0:
        skipped["pyvmm-runtime state ID"] = "needs root (it creates a container)"
    else:
        root, cid = str(tmp / "state"), "bench-startup"
        bundle = busybox_bundle(runtime, tmp)
        subprocess.run([runtime, "--root", root, "create", "--bundle", bundle, cid],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        cleanup.append([runtime, "--root", root, "delete", "--force", cid])
        found["pyvmm-runtime state ID"] = [runtime, "--root", root, "state", cid]
    return found, skipped, cleanup


def measure(found: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict:
    baseline = [sys.executable, "-c", "pass"]
    samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in found}
    for round_ in range(runs + 1):  # the first round warms the caches and is not counted
        for name, argv in found.items():
            base_wall, base_cpu = run_once(baseline, env)
            wall, cpu = run_once(argv, env)
            if round_:
                samples[name].append((wall, cpu, base_wall, base_cpu))
    results = {}
    for name, rows in samples.items():
        wall, cpu, base_wall, base_cpu = (statistics.median(col) for col in zip(*rows, strict=True))
        results[name] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "python_pass_wall_s": base_wall,
            "python_pass_cpu_s": base_cpu,
            "wall_ratio": wall / base_wall,
            "cpu_ratio": cpu / base_cpu,
            "paired_wall_ratio": statistics.median(w / bw for w, _, bw, _ in rows),
            "paired_cpu_ratio": statistics.median(c / bc for _, c, _, bc in rows),
            "wall_range_s": [min(r[0] for r in rows), max(r[0] for r in rows)],
            "runs": len(rows),
            "budget": BUDGET[name],
        }
    return results


def report(results: dict, skipped: dict[str, str]) -> str:
    lines = [
        "| command | wall median | python -c pass | ratio (paired) | cpu median | cpu ratio "
        "(paired) | budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        verdict = "within" if r["paired_wall_ratio"] <= r["budget"] else "over"
        lines.append(
            f"| `{name}` | {r['wall_s'] * 1000:.1f} ms | {r['python_pass_wall_s'] * 1000:.1f} ms "
            f"| {r['wall_ratio']:.2f} ({r['paired_wall_ratio']:.2f}) | {r['cpu_s'] * 1000:.1f} ms "
            f"| {r['cpu_ratio']:.2f} ({r['paired_cpu_ratio']:.2f}) | {r['budget']:g}x: {verdict} |"
        )
    lines += [f"\n{name}: not measured, {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="counted rounds (default 21)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--bin",
        type=Path,
        default=Path(sys.executable).parent,
        help="where pyvmm and pyvmm-runtime are (default: beside this Python)",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-startup-") as tmp:
        found, skipped, cleanup = commands(args.bin.absolute(), Path(tmp))
        try:
            results = measure(found, args.runs, env)
        finally:
            for argv in cleanup:
                subprocess.run(argv, check=False)
    load = os.getloadavg()
    print(f"{args.bin}: {args.runs} rounds; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs\n")  # fmt: skip
    print(report(results, skipped))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "skipped": skipped,
                                         "load_average": load}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
