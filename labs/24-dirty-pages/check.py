"""Lab 24's checks: the student's reading of KVM's dirty log finds exactly the pages the
workload writes (it says where its buffer is), and its count follows the workload's
size, interval after interval."""

import re
import statistics
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail

TITLE = "Dirty pages: how fast a guest writes its memory"
CONCEPT = "KVM_MEM_LOG_DIRTY_PAGES, KVM_GET_DIRTY_LOG's bitmap, a dirty rate (pre-copy's input)"
NEEDS = ("kvm",)
FILES = ("dirty_rate.py",)
_LINE = re.compile(r"interval (\d+): (\d+) pages dirty, (\d+) pages/s, (\d+) of the buffer's (\d+)")
OTHERS = 16  # pages the workload may dirty besides its buffer: its stack, the kernel's


def _intervals(workdir: Path, pages: int) -> list[tuple[int, int]]:
    """(pages counted, of them in the buffer) for each whole interval of a run."""
    proc = run_student(["dirty_rate.py", str(pages)], workdir, timeout=120)
    rows = [(int(m[2]), int(m[4])) for m in _LINE.finditer(proc.stdout)]
    if proc.returncode or len(rows) < 3:
        raise CheckFailed(f"dirty_rate.py {pages} did not report 3 intervals:\n{tail(proc)}")
    return rows


def finds_the_written_pages(workdir: Path) -> str:
    pages = 300
    rows = _intervals(workdir, pages)
    wrong = [(n, got, seen) for n, (got, seen) in enumerate(rows, 1) if seen != pages]
    if wrong:
        n, got, seen = wrong[0]
        raise CheckFailed(
            f"interval {n}: {got} pages counted, {seen} of them in the buffer of {pages} the "
            "workload wrote in every interval: the page numbers are not the bits' numbers "
            "(bit b of byte k is page 8k + b, lowest bit first)"
        )
    return f"every interval: all {pages} pages of the buffer, {rows[0][0] - pages} others"


def counts_follow_the_workload(workdir: Path) -> str:
    said = []
    for pages in (40, 600):
        counted = statistics.median(got for got, _ in _intervals(workdir, pages))
        if not pages <= counted <= pages + OTHERS:
            raise CheckFailed(
                f"the workload writes {pages} pages each pass, several passes an interval; "
                f"you counted {counted:g} an interval: a page is a bit, not a byte or a word"
            )
        said.append(f"{pages} pages written -> {counted:g} counted")
    return "; ".join(said)


CHECKS = [
    Check(
        "the pages counted dirty are the pages the guest wrote",
        "pages_in: bit b of byte k is page 8k + b; dirty_since_last_look adds each slot's "
        "first page",
        finds_the_written_pages,
    ),
    Check(
        "the count follows what the workload writes",
        "one page per set bit, every set bit of every slot's bitmap",
        counts_follow_the_workload,
    ),
]
