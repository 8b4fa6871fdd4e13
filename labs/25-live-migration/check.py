"""Lab 25's checks: the counter, moved by the student's code while it runs, counts on in
the other process without a boot, and the source handed it over live (pre-copy rounds
while it ran, then a short stop) and ended by itself."""

import json
import re
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, once, run_student, tail

TITLE = "Move a running guest: live migration"
CONCEPT = "pre-copy rounds over the dirty log, stop-and-copy, downtime; a VM between processes"
NEEDS = ("kvm",)
FILES = ("move.py",)


def _move(workdir: Path) -> tuple[int, str, list[int], bool, dict]:
    """One move, which both checks grade."""
    return once(workdir, FILES, lambda: _moved(workdir))


def _moved(workdir: Path) -> tuple[int, str, list[int], bool, dict]:
    proc = run_student(["move.py"], workdir, timeout=120)
    last = re.search(r"last count on the source: (\d+)", proc.stdout)
    ended = re.search(r"the source ended: (.*)", proc.stdout)
    after = re.search(r"destination: ([\d ]*)", proc.stdout)
    figures = re.search(r"migration: (.*)", proc.stdout)
    if proc.returncode or not (last and ended and after and figures):
        raise CheckFailed(f"move.py did not report a move:\n{tail(proc)}")
    counts = [int(n) for n in after[1].split()]
    booted = "the destination booted" in proc.stdout
    return int(last[1]), ended[1], counts, booted, json.loads(figures[1])


def _first(counts: list[int]) -> str:
    return " ".join(map(str, counts[:5])) + (" ..." if len(counts) > 5 else "")


def counts_on_elsewhere(workdir: Path) -> str:
    last, _, counts, booted, _ = _move(workdir)
    if booted or not counts or counts != list(range(last + 1, last + 1 + len(counts))):
        raise CheckFailed(
            f"the source's last count was {last}; the other process "
            f"{'booted and ' if booted else ''}printed {_first(counts)}: the guest never went on "
            "there from where it was (was the destination given the guest, --incoming?)"
        )
    return f"count {last} on the source, then {_first(counts)} in the other process"


def handed_over_live(workdir: Path) -> str:
    _, ended, _, _, figures = _move(workdir)
    rounds = figures.get("pages_per_round") or []
    if ended != "0" or len(rounds) < 2:
        raise CheckFailed(
            f"the source ended with {ended!r}, migration figures {figures}: it must have "
            "handed the guest over live and ended by itself (status 0), not been stopped, "
            "copied and killed"
        )
    return (
        f"{len(rounds)} rounds, pages per round {rounds}, downtime {figures['downtime_ms']} ms; "
        "the source ended with status 0"
    )


CHECKS = [
    Check(
        "the guest counts on in the other process, without a boot",
        "start the destination with `pyvmm boot --incoming unix:PATH` and migrate to it",
        counts_on_elsewhere,
    ),
    Check(
        "the source handed the guest over while it ran, and ended by itself",
        "the migrate request on the source's control socket (api.request(..., 'migrate', "
        "to=...)): pre-copy, then the stop-and-copy",
        handed_over_live,
    ),
]
