"""Lab 16's checks: the student's table holds the bench's own figures, and says which
claims hold for a tiny kernel."""

import json
import sys
from pathlib import Path

from vmm.lab import Check, CheckFailed, run_student, tail

TITLE = "Closing: the VM-versus-container table, measured"
CONCEPT = "startup, size, memory, isolation: which claims hold for a tiny kernel"
NEEDS = ("root", "kvm", "images")
FILES = ("table.py",)


def _bench(workdir: Path) -> dict:
    """One quick bench of the tiny VM and a container, as the student would run it."""
    out = workdir / "bench.json"
    if not out.exists():
        pyvmm = [sys.executable, "-m", "vmm", "bench", "--fast", "--rows",
                 "tiny-vm,container-volume", "--json", str(out)]  # fmt: skip
        proc = run_student(pyvmm, workdir, timeout=300)
        if proc.returncode or not out.exists():
            raise CheckFailed(f"pyvmm bench --fast failed:\n{tail(proc)}")
    bench = json.loads(out.read_text())
    for row in bench["rows"]:
        if row.get("status") != "ok":
            out.unlink()
            raise CheckFailed(
                f"the bench's {row['key']} row failed: {row.get('status')} "
                f"{row.get('error') or row.get('notes')}"
            )
    return bench


def _table(workdir: Path) -> tuple[dict, dict]:
    bench = _bench(workdir)
    proc = run_student(["table.py", "bench.json"], workdir, timeout=30)
    try:
        return bench, json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(f"table.py did not end with its JSON line:\n{tail(proc)}") from None


def _row(bench: dict, key: str) -> dict:
    return next(r for r in bench["rows"] if r["key"] == key)


def figures_are_the_bench(workdir: Path) -> str:
    bench, got = _table(workdir)
    vm, ct = _row(bench, "tiny-vm"), _row(bench, "container-volume")
    med = lambda row, name: row["figures"][name]["median"]  # noqa: E731
    want = {
        "startup": (med(vm, "result_ms"), med(ct, "result_ms")),
        "size": (vm["disk"]["total_bytes"], ct["disk"]["total_bytes"]),
        "memory": (med(vm, "rss_bytes"), med(ct, "rss_bytes") + med(ct, "cgroup_peak_bytes")),
        "isolation": (vm["kernel"], ct["kernel"]),
    }
    for claim, (v, c) in want.items():
        row = got.get(claim) or {}
        if (row.get("vm"), row.get("container")) != (v, c):
            raise CheckFailed(
                f"{claim}: the table says {row.get('vm')!r} / "
                f"{row.get('container')!r}, the bench measured {v!r} / {c!r}"
            )
    return "every figure is the bench's"


def verdicts_follow_the_figures(workdir: Path) -> str:
    _, got = _table(workdir)
    ratios = {"startup": 10, "size": 100, "memory": 2}
    for claim, ratio in ratios.items():
        row = got[claim]
        if row.get("holds") is not (row["vm"] >= ratio * row["container"]):
            raise CheckFailed(
                f"{claim}: {row['vm']} against {row['container']}: does the "
                f"claim hold (a factor {ratio})?"
            )
    if got["isolation"].get("holds") is not (
        got["isolation"]["vm"] != got["isolation"]["container"]
    ):
        raise CheckFailed("isolation: does the VM run a kernel other than the container's?")
    return ", ".join(f"{c}: {'holds' if got[c]['holds'] else 'does not hold'}" for c in got)


CHECKS = [
    Check(
        "the table's figures are the bench's",
        "figures.result_ms.median, disk.total_bytes, "
        "rss_bytes (+ cgroup_peak_bytes for the container), kernel",
        figures_are_the_bench,
    ),
    Check(
        "each verdict follows from its figures",
        "compare with the ratios at the top of table.py; isolation holds when the kernels differ",
        verdicts_follow_the_figures,
    ),
]
