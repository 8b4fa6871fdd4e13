#!/usr/bin/env python3
"""Run the OCI runtime conformance suite against pyvmm-runtime, runc and crun, in one run.

The suite is opencontainers/runtime-tools' ``validation/``: one Go program per part
of the runtime spec, each printing TAP. Commit 260e151 is the last one that builds
with Debian 12's Go 1.19; its dependencies are vendored, so it builds offline::

    git clone https://github.com/opencontainers/runtime-tools ~/.cache/pyvmm/runtime-tools
    git -C ~/.cache/pyvmm/runtime-tools checkout 260e151
    sudo .venv/bin/python scripts/oci_conformance.py [--tools DIR] [--results DIR]

The script builds the suite if needed (``make runtimetest validation-executables``
with GOFLAGS=-mod=vendor), then runs every test program against each runtime in
turn, in a private mount namespace without /sys/fs/cgroup/unified: crun 1.8.1
refuses a cgroup "hybrid" host (v1 controllers plus an empty cgroup2 at
/sys/fs/cgroup/unified) unless that is unmounted, and the three runtimes get the same
view. It prints the pass counts side by side and every test where they differ;
the TAP output of each runtime is kept in ``--results``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

COMMIT = "260e151"
DEFAULT_TOOLS = Path.home() / ".cache" / "pyvmm" / "runtime-tools"
TIMEOUT_S = 120  # one test program; a hung one is counted as a failure


def build(tools: Path) -> None:
    tests = [
        d / f"{d.name}.t" for d in tools.glob("validation/*") if (d / f"{d.name}.go").is_file()
    ]
    if (tools / "runtimetest").is_file() and all(t.is_file() for t in tests):
        return
    env = {**os.environ, "GOFLAGS": "-mod=vendor", "GOPROXY": "off",
           "GOCACHE": str(tools / ".gocache")}  # fmt: skip
    subprocess.run(["make", "-C", str(tools), "runtimetest", "validation-executables"],
                   env=env, check=True)  # fmt: skip


def _bundles() -> set[Path]:
    """The suite's bundles (it makes them in $TMPDIR and leaves some behind)."""
    return set(Path(os.environ.get("TMPDIR", "/tmp")).glob("ocitest*"))


def run_suite(tools: Path, runtime: str, out: Path) -> dict[str, tuple[int, int, int, bool]]:
    """Every test program against ``runtime``: by program, its passed, failed and
    skipped TAP lines, and whether the program passed as a whole (exit status 0 and
    nothing failed: some programs fail after all their lines passed)."""
    results = {}
    before = _bundles()
    with open(out, "w") as log:
        for program in sorted(tools.glob("validation/*/*.t")):
            name = program.parent.name
            # unshare -m: a private mount namespace with cgroup2's empty hybrid mount gone.
            script = f"umount /sys/fs/cgroup/unified 2>/dev/null; exec {program}"
            try:
                done = subprocess.run(
                    ["unshare", "-m", "sh", "-c", script], cwd=tools, capture_output=True,
                    text=True, errors="replace", timeout=TIMEOUT_S,
                    env={**os.environ, "RUNTIME": runtime},
                )  # fmt: skip
                tap, status = done.stdout + done.stderr, done.returncode
            except subprocess.TimeoutExpired:
                tap, status = "not ok 1 - timed out\n", -1
            log.write(f"### {name}\n{tap}\n")
            passed = len(re.findall(r"^ok \d+(?! .*# SKIP)", tap, re.M))
            skipped = len(re.findall(r"^ok \d+ .*# SKIP", tap, re.M))
            failed = len(re.findall(r"^not ok \d+", tap, re.M))
            results[name] = (passed, failed, skipped, status == 0 and failed == 0)
    with open("/proc/self/mountinfo") as f:
        mounted = f.read()
    for bundle in _bundles() - before:
        if str(bundle) not in mounted:
            shutil.rmtree(bundle, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS,
                        help=f"runtime-tools at {COMMIT} (default: %(default)s)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=Path("oci-conformance"),
                        help="where the TAP output goes (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--runtime",
        action="append",
        help="a runtime to test (repeatable; default: pyvmm-runtime, runc, crun)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("oci_conformance: needs root (the suite creates real containers)", file=sys.stderr)
        return 2
    if not (args.tools / "validation").is_dir():
        print(f"oci_conformance: no runtime-tools checkout at {args.tools}; see --help",
              file=sys.stderr)  # fmt: skip
        return 2
    build(args.tools)
    pyvmm = shutil.which("pyvmm-runtime", path=os.path.dirname(sys.executable))
    runtimes = args.runtime or [r for r in (pyvmm, shutil.which("runc"), shutil.which("crun")) if r]
    args.results.mkdir(parents=True, exist_ok=True)
    table = {}
    for runtime in runtimes:
        name = Path(runtime).name
        print(f"oci_conformance: running the suite against {runtime}", file=sys.stderr)
        table[name] = run_suite(args.tools, runtime, args.results / f"{name}.tap")
    names = list(table)
    print("| runtime | passed | failed | skipped | programs passed |\n|---|---|---|---|---|")
    for name in names:
        p, f, s, ok = (sum(v[i] for v in table[name].values()) for i in range(4))
        print(f"| {name} | {p} | {f} | {s} | {ok} of {len(table[name])} |")
    print(f"\nprograms where they differ (passed/failed lines, program: {', '.join(names)}):")
    for test in sorted(set().union(*table.values())):
        cells = [table[n].get(test, (0, 0, 0, False)) for n in names]
        if len({(c[0], c[1], c[3]) for c in cells}) > 1:
            print(f"  {test:34} " + "  ".join(f"{p}/{f} {'PASS' if ok else 'FAIL'}"
                                              for p, f, _, ok in cells))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
