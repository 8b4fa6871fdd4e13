"""Lab 16's checks: the student's table holds the bench's own figures, and says which
claims hold for a tiny kernel."""

import copy
import json
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail

TITLE = "Closing: the VM-versus-container table, measured"
CONCEPT = "startup, size, memory, isolation: which claims hold for a tiny kernel"
NEEDS = ("root", "kvm", "images")
FILES = ("table.py",)
# The ratios by which a claim holds, as table.py states them to the student.
STARTUP_RATIO, SIZE_RATIO, MEMORY_RATIO = 10, 100, 2


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


def _table(workdir: Path, bench: Path) -> dict:
    proc = run_student(["table.py", bench.name], workdir, timeout=30)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(f"table.py did not end with its JSON line:\n{tail(proc)}") from None


def _row(bench: dict, key: str) -> dict:
    return next(r for r in bench["rows"] if r["key"] == key)


def _claims(bench: dict) -> dict[str, tuple]:
    """Each claim's two figures, as the bench has them."""
    vm, ct = _row(bench, "tiny-vm"), _row(bench, "container-volume")
    med = lambda row, name: row["figures"][name]["median"]  # noqa: E731
    return {
        "startup": (med(vm, "result_ms"), med(ct, "result_ms")),
        "size": (vm["disk"]["total_bytes"], ct["disk"]["total_bytes"]),
        "memory": (med(vm, "rss_bytes"), med(ct, "rss_bytes") + med(ct, "cgroup_peak_bytes")),
        "isolation": (vm["kernel"], ct["kernel"]),
    }


def _same_figures(bench: dict, got: dict, source: str) -> None:
    for claim, (v, c) in _claims(bench).items():
        row = got.get(claim) or {}
        if (row.get("vm"), row.get("container")) != (v, c):
            raise CheckFailed(
                f"{claim}: the table says {row.get('vm')!r} / "
                f"{row.get('container')!r}, {source} {v!r} / {c!r}"
            )


def figures_are_the_bench(workdir: Path) -> str:
    bench = _bench(workdir)
    _same_figures(bench, _table(workdir, workdir / "bench.json"), "the bench measured")
    return "every figure is the bench's"


def _fed(bench: dict, holds: bool) -> dict:
    """The bench with figures the check chose: every claim at exactly its ratio (it
    holds: at least that many times), or one unit short of it (it does not)."""
    fed = copy.deepcopy(bench)
    vm, ct = _row(fed, "tiny-vm"), _row(fed, "container-volume")
    short = 0 if holds else 1
    figures = {  # name: (the VM's, the container's)
        "result_ms": (STARTUP_RATIO * 10.0 - short, 10.0),
        "rss_bytes": (MEMORY_RATIO * 3000 - short, 1000),
        "cgroup_peak_bytes": (0, 2000),  # the container's memory is rss + peak: 3000
    }
    for name, (v, c) in figures.items():
        vm["figures"].setdefault(name, {})["median"] = v
        ct["figures"].setdefault(name, {})["median"] = c
    vm["disk"]["total_bytes"], ct["disk"]["total_bytes"] = SIZE_RATIO * 1000 - short, 1000
    vm["kernel"], ct["kernel"] = "its own", "the host's" if holds else "its own"
    return fed


def verdicts_follow_the_figures(workdir: Path) -> str:
    """Verdicts on figures the check feeds: every claim holds in one bench and fails in
    the other, so no verdict right for this machine's figures alone can pass."""
    bench = _bench(workdir)
    fed_path = workdir / "fed-bench.json"
    try:
        for holds in (True, False):
            fed = _fed(bench, holds)
            fed_path.write_text(json.dumps(fed))
            got = _table(workdir, fed_path)
            _same_figures(fed, got, "the check fed")
            for claim, (v, c) in _claims(fed).items():
                if got[claim].get("holds") is not holds:
                    raise CheckFailed(
                        f"{claim}: fed {v!r} against {c!r}, the table's verdict is "
                        f"{got[claim].get('holds')!r}: it should be {holds} (ratios: startup "
                        f"{STARTUP_RATIO}, size {SIZE_RATIO}, memory {MEMORY_RATIO}, at least; "
                        f"isolation: the kernels differ)"
                    )
    finally:
        fed_path.unlink(missing_ok=True)
    return "on figures fed to it, every verdict holds at its ratio and fails one short of it"


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
