"""``pyvmm bench build``: ``pyvmm image build`` beside ``buildah bud`` with runc.

One small Containerfile (a COPY of a hundred files, two RUN steps, a whiteout,
config instructions) is built by both from the same base image (the workload image,
scripts/build_images.py's, imported into pyvmm's store and loaded into a private
Podman store that buildah shares), in one run of this command:

- cold: ``--no-cache``, every step done again (each RUN a container: pyvmm's through
  its OCI core, buildah's through runc);
- cached: the same build again with the cache (buildah with ``--layers``, which
  ``podman build`` defaults to), every step found in it.

Each figure is the median of ``runs`` whole commands as a user runs them, a new tag
each time; the ratio is pyvmm's time over buildah's.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmm.bench.containers import IMAGE, private_podman
from vmm.bench.registry import PYVMM, REPO
from vmm.container.linux.fdtree import remove_tree
from vmm.errors import PyvmmError

CONTAINERFILE = """\
ARG BASE
FROM $BASE
ENV APP=/app
WORKDIR /app
COPY files/ ./files/
RUN for i in 1 2 3 4 5 6 7 8 9 10; do echo $i > n$i; done && rm /etc/group
RUN cat n* files/* > all
LABEL bench=build
CMD ["cat", "/app/all"]
"""
FILES = 100


def _context(top: Path) -> Path:
    ctx = top / "context"
    (ctx / "files").mkdir(parents=True)
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    for i in range(FILES):
        (ctx / "files" / f"f{i:03}").write_text(f"file {i}\n" * 20)
    return ctx


def _timed(argv: list, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise PyvmmError(f"{' '.join(map(str, argv[:4]))}...: {r.stderr.strip()[-300:]}")
    return elapsed


def measure(runs: int = 3) -> dict:
    runc = shutil.which("runc")
    if shutil.which("buildah") is None or runc is None:
        raise PyvmmError("buildah and runc are needed (scripts/setup.sh --all)")
    rows: dict = {"cold": {"pyvmm": [], "buildah": []}, "cached": {"pyvmm": [], "buildah": []}}
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-build-", dir="/var/tmp") as tmp:
        tmp = Path(tmp)
        store, archive = tmp / "store", tmp / "workload.tar"
        subprocess.run([sys.executable, REPO / "scripts" / "build_images.py", "--root", store,
                        "--workload", "/bin/busybox", "--oci-archive", archive],
                       check=True, capture_output=True)  # fmt: skip
        ctx = _context(tmp)
        try:
            with private_podman(tmp / "podman") as podman:
                subprocess.run([*podman.argv, "load", "-i", archive], check=True,
                               capture_output=True, env=podman.env)  # fmt: skip
                buildah = ["buildah", *podman.argv[1:], "bud", "--runtime", runc, "--layers",
                           "--build-arg", f"BASE={IMAGE}"]  # fmt: skip
                pyvmm = [*PYVMM, "--root", str(store), "image", "build",
                         "--build-arg", "BASE=workload"]  # fmt: skip
                for i in range(runs):
                    for mode, flags in (("cold", ["--no-cache"]), ("cached", [])):
                        tag = f"bench-{mode}-{i}"
                        rows[mode]["pyvmm"].append(_timed([*pyvmm, *flags, "-t", tag, ctx]))
                        rows[mode]["buildah"].append(
                            _timed([*buildah, *flags, "-t", f"localhost/{tag}", ctx], podman.env)
                        )
        finally:
            remove_tree(store)
    result = {"runs": runs, "rows": {}}
    for mode, row in rows.items():
        result["rows"][mode] = {tool: statistics.median(times) for tool, times in row.items()}
    return result


def table(result: dict) -> str:
    lines = [f"Build of one small Containerfile (medians of {result['runs']} runs)", "",
             "| build | pyvmm image build | buildah bud (runc) | x buildah |",
             "|---|---|---|---|"]  # fmt: skip
    for mode, r in result["rows"].items():
        p, b = r["pyvmm"], r["buildah"]
        lines.append(f"| {mode} | {p * 1000:.0f} ms | {b * 1000:.0f} ms | {p / b:.2f} |")
    return "\n".join(lines)
