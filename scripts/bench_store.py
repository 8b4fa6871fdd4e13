#!/usr/bin/env python3
"""Layer store benchmark: big trees at disk speed, beside ``tar -x`` and ``rm -rf``.

Makes a tree of N small files (200,000 by default: 100 directories of 20 of 100
files), tars it once, then per run, each step on its own after a ``sync``:

- ``tar -x`` of the tar into a fresh directory, then ``rm -rf`` of that directory;
- ``pyvmm image import`` of the tar into a fresh state root, then ``pyvmm image rm``
  (the layer's 200,000 files go);
- a container whose writable layer holds the same tree, ``pyvmm container rm``.

pyvmm is timed as a whole process, as a user runs it. Prints the medians and the
ratios (pyvmm over the tool); docs/bench.md keeps the figures. Needs root.

    .venv/bin/python scripts/bench_store.py [--files 200000] [--runs 3] [--dir /var/tmp]
    .venv/bin/python scripts/bench_store.py --profile import   # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmm.container.engine import container as lifecycle
from vmm.container.image import images, importer
from vmm.container.store.state import Store

REPO = Path(__file__).resolve().parent.parent
PYVMM = [str(Path(sys.executable).parent / "pyvmm")]


def make_tree(top: Path, files: int) -> None:
    """``files`` files of 64 bytes, 100 to a directory, 20 directories to a parent."""
    data = b"x" * 64
    for i in range(files):
        d = top / f"p{i // 2000}" / f"d{i // 100 % 20}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{i}", "wb") as f:
            f.write(data)


def timed(out: dict[str, float], step: str, *args, **kw) -> None:
    """``args`` run after a sync (earlier steps' writeback is not theirs): its seconds
    go to ``out[step]``, and its CPU seconds (user and system) to ``out[step + " cpu"]``."""
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    out[step] = time.perf_counter() - t0
    out[step + " cpu"] = usage.ru_utime + usage.ru_stime
    if os.waitstatus_to_exitcode(status):
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), proc.args)


def pyvmm(root: Path, *args: str) -> list[str]:
    return [*PYVMM, "--root", str(root), *args]


def one_run(work: Path, tar: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    tree = work / "x"
    tree.mkdir()
    timed(out, "tar -x", "tar", "-xf", tar, "-C", tree)
    timed(out, "rm -rf", "rm", "-rf", tree)
    root = work / "root"
    timed(out, "image import", *pyvmm(root, "image", "import", str(tar), "big"))
    timed(out, "image rm", *pyvmm(root, "image", "rm", "big"))
    (work / "tiny").mkdir()
    store = Store(root)
    importer.import_image(store, work / "tiny", "tiny")
    rec = lifecycle.create(store, "tiny", ["/x"], name="big")  # never run: only its layer
    subprocess.run(["tar", "-xf", tar, "-C", root / "containers" / rec.id / "upper"], check=True)
    timed(out, "container rm", *pyvmm(root, "container", "rm", "big"))
    shutil.rmtree(root)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="where the trees go (the disk measured)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--tar", type=Path,
                        help="a layer tar made before, instead of a new one")  # fmt: skip
    parser.add_argument("--profile", choices=("import", "rm"),
                        help="profile one pyvmm step in-process (cProfile), once")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pyvmm-bench-store-") as tmp:
        tmp = Path(tmp)
        tar = args.tar or tmp / "layer.tar"
        if not args.tar:
            make_tree(tmp / "tree", args.files)
            subprocess.run(["tar", "-cf", tar, "-C", tmp / "tree", "."], check=True)
            shutil.rmtree(tmp / "tree")
        if args.profile:
            return profile(tmp, tar, args.profile)
        runs = []
        for i in range(args.runs):
            work = tmp / f"run{i}"
            work.mkdir()
            runs.append(one_run(work, tar))
            steps = ", ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items() if "cpu" not in k)
            print(f"run {i + 1}/{args.runs}: {steps}", file=sys.stderr)
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    pairs = {"image import": "tar -x", "image rm": "rm -rf", "container rm": "rm -rf"}
    ratios = {f"{a} / {b}": medians[a] / medians[b] for a, b in pairs.items()}
    # Each run's own ratio too: a change in the machine's load falls on both of a pair.
    per_run = {f"{a} / {b}": statistics.median(r[a] / r[b] for r in runs) for a, b in pairs.items()}
    print(f"{args.files} files in {args.dir}, median of {args.runs} runs")
    for k, v in medians.items():
        if "cpu" not in k:
            print(f"  {k:<14} {v:8.2f} s (CPU {medians[k + ' cpu']:.2f} s)")
    for k, v in ratios.items():
        print(f"  {k:<24} {v:5.2f}x (median of the runs' own ratios {per_run[k]:.2f}x)")
    if args.json:
        data = {"files": args.files, "dir": str(args.dir), "runs": runs, "median_s": medians,
                "ratios": ratios, "median_run_ratios": per_run}  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2))
    return 0


def profile(tmp: Path, tar: Path, step: str) -> int:
    """cProfile of one import (or one image rm) in this process, top 25 by own time."""
    import cProfile
    import pstats

    store = Store(tmp / "root")
    prof = cProfile.Profile()
    if step == "import":
        prof.runcall(importer.import_image, store, tar, "big")
    else:
        importer.import_image(store, tar, "big")
        subprocess.run(["sync"], check=True)
        with store.lock():
            prof.runcall(images.remove, store, "big", images.Users([], [], set(), []))
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
