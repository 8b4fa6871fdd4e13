#!/usr/bin/env python3
"""Container start-up benchmark: pyvmm beside crun, runc and unshare+chroot.

Runs ``/bin/true``, ``/bin/echo`` and the workload (guest/workload/workload, hashing
an input file through a bind mount) in each runtime on the same root filesystem, whole process from
start to exit, and prints medians, ratios, and what pyvmm measured from inside itself
together with what stands in its way (interpreter, imports, the cgroup migration).
Installs crun and runc from Debian when they are missing. Needs root.

    .venv/bin/python scripts/bench_container.py [--runs 20] [--size 1048576] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from vmm.bench import container_startup as bench
from vmm.bench.measure import pyvmm_command
from vmm.container.linux import cgroups
from vmm.container.store.state import Store

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "guest" / "workload" / "workload"


def ensure_tools() -> None:
    missing = [t for t in ("crun", "runc") if not shutil.which(t)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    if not WORKLOAD.is_file():
        subprocess.run(["make", "-s", "-C", REPO / "guest" / "workload"], check=True)


def input_image(path: Path, size: int) -> None:
    """The workload's input: a header block ("PYVMMWL1", u64 length), then the data."""
    header = b"PYVMMWL1" + struct.pack("<Q", size)
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    path.write_bytes(header.ljust(512, b"\0") + data + bytes(512))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per measurement (>= 10)")
    parser.add_argument("--size", type=int, default=1 << 20, help="workload input bytes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_container: needs root")
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-") as tmp:
        tmp = Path(tmp)
        root = tmp / "state"
        subprocess.run([sys.executable, REPO / "scripts" / "build_images.py", "--root", root,
                        "--workload", WORKLOAD], check=True, capture_output=True)  # fmt: skip
        data = tmp / "data"
        data.mkdir()
        input_image(data / "input.img", args.size)
        rootfs = bench.flat_rootfs(Store(root), "workload", tmp / "rootfs")
        (rootfs / "data").mkdir()
        shutil.copy(data / "input.img", rootfs / "data" / "input.img")  # for chroot
        cases = {
            "true": (["/bin/true"], "busybox", []),
            # prints at once: pyvmm's run request to first output is its own time
            "echo": (["/bin/echo", "hello"], "busybox", []),
            "workload": (["/bin/workload", "/data/input.img"], "workload", [f"{data}:/data"]),
        }
        results = {"runs": args.runs, "cases": {}}
        pyvmm = pyvmm_command()
        for case, (argv, image, volumes) in cases.items():
            bundle = bench.oci_bundle(rootfs, tmp / f"bundle-{case}", argv, {str(data): "/data"})
            rows = {"pyvmm": bench.pyvmm_run(pyvmm, root, image, argv, volumes, args.runs)}
            if cgroups.host_version() == "v1" and os.path.ismount("/sys/fs/cgroup/unified"):
                rows["pyvmm, cgroup2 view"] = bench.pyvmm_run(
                    pyvmm, root, image, argv, volumes, args.runs, wrapper=bench.CGROUP2_VIEW
                )
            results["cases"][case] = {
                **rows,
                "crun": bench.crun_run(bundle, args.runs),
                "runc": bench.runc_run(bundle, args.runs),
                "unshare+chroot": bench.chroot_floor(rootfs, argv, args.runs),
            }
        results["interpreter"] = bench.interpreter_costs(args.runs)
        results["cgroup_attach"] = bench.cgroup_attach_cost(args.runs)
        results["sizes"] = bench.image_sizes(root)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def report(results: dict) -> None:
    print(f"medians over {results['runs']} runs, whole process start to exit")
    for case, rows in results["cases"].items():
        print(f"\n{case}:")
        floor = rows["unshare+chroot"]["median_s"]
        for name, row in rows.items():
            ratios = "  ".join(
                f"x{row['median_s'] / rows[other]['median_s']:.2f} vs {other}"
                for other in ("crun", "runc")
                if other != name
            )
            print(f"  {name:15} {ms(row['median_s'])} (min {ms(row['min_s'])})"
                  f"  x{row['median_s'] / floor:.2f} vs floor  {ratios}")  # fmt: skip
        outputs = {row["result"] for row in rows.values()}
        print(f"  same output everywhere: {len(outputs) == 1} {sorted(outputs)[0][:60]!r}")
        for name in (n for n in rows if n.startswith("pyvmm")):
            p = rows[name]
            first = ms(p["first_output_s"]) if p["first_output_s"] else "(no output)"
            peak = f"{p['peak_memory'] / 2**20:.1f} MiB" if p["peak_memory"] else "n/a"
            print(f"  {name} from inside: run request -> first output {first};"
                  f" cgroup peak memory {peak}; each step's end (ms):")  # fmt: skip
            steps = sorted((t, k) for k, t in p["steps"].items() if k != "imports_s")
            print("    " + ", ".join(f"{k[:-2]} {t * 1000:.1f}" for t, k in steps))
            imports = ms(p["steps"]["imports_s"])
            print(f"    (before the request: importing the container modules {imports})")
    i = results["interpreter"]
    print(f"\nwhat stands before pyvmm's own work: python -c pass {ms(i['python_s'])},"
          f" + import vmm.cli.group (click) {ms(i['python_vmm_cli_s'])},"
          f" + vmm.cli.container {ms(i['python_container_cli_s'])}")  # fmt: skip
    c = results["cgroup_attach"]
    print(f"moving a process into a {c['cgroup']} cgroup after 50 ms idle: {ms(c['median_s'])}"
          f" (min {ms(c['min_s'])})")  # fmt: skip
    s = results["sizes"]
    sizes = ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in s["images"].items())
    print(f"image sizes: {sizes}; all, shared layers once: {s['total'] / 2**20:.2f} MiB")


if __name__ == "__main__":
    sys.exit(main())
