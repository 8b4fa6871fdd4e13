"""Lab 23's checks: with the student's lock (spinlock.c) around each line (race.c), two
CPUs printing at once give whole lines, and they still take turns: the lines are whole
because of the lock, not because one CPU waited for the other to finish."""

import re
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, run_student, tail

TITLE = "A race between two vCPUs, and a lock"
CONCEPT = "shared device, torn output, atomic fetch-and-add, a fair (ticket) spinlock"
NEEDS = ("kvm",)
FILES = ("../../guest/kernel/spinlock.c", "../../guest/kernel/race.c")
CPUS = 2
LINE = re.compile(r"cpu (\d+) says line (\d+) of (\d+): all of it, in one piece")


def _race(workdir: Path, *words: str) -> tuple[list[str], str]:
    """The lines the CPUs printed in the race, in order, and the run's tail."""
    files = {f"kernel/{name}": workdir / name for name in ("spinlock.c", "race.c")}
    build = build_guest(workdir, files, ["build/kernel.elf", "build/hello"])
    pyvmm = [sys.executable, "-m", "vmm", "boot", "--cpus", str(CPUS),
             "--kernel", str(build / "kernel.elf"), "--program", str(build / "hello"),
             "--cmdline", " ".join(("race", *words))]  # fmt: skip
    # A race takes half a second here, a few at a load of 13: one still going after
    # 10 s waits for a lock that is never handed on.
    try:
        proc = run_student(pyvmm, workdir, timeout=10)
    except CheckFailed as e:
        raise CheckFailed(f"{e}: a CPU waits for a lock that is never handed on?") from None
    if proc.returncode != 0 or "race: " not in proc.stdout:
        raise CheckFailed(f"the race did not finish (status {proc.returncode}):\n{tail(proc)}")
    body = proc.stdout.split(" CPUs up\n", 1)[-1].split("race: ", 1)[0]
    return body.splitlines(), tail(proc)


def lines_are_whole(workdir: Path) -> str:
    lines, end = _race(workdir)
    torn = [line for line in lines if not LINE.fullmatch(line)]
    if torn:
        raise CheckFailed(
            f"{len(torn)} of {len(lines)} lines torn, e.g. {torn[0]!r}: the bytes of two "
            "CPUs mixed; is each line printed under the lock, and is the lock atomic?"
        )
    said = sorted((int(m[1]), int(m[2])) for m in map(LINE.fullmatch, lines))
    total = int(LINE.fullmatch(lines[0])[3]) if lines else 0
    if said != [(cpu, n) for cpu in range(CPUS) for n in range(1, total + 1)] or not total:
        raise CheckFailed(f"lines lost or repeated: {len(lines)} lines:\n{end}")
    return f"{len(lines)} lines from {CPUS} CPUs, every one whole"


def cpus_take_turns(workdir: Path) -> str:
    lines, _ = _race(workdir)
    torn, _ = _race(workdir, "nolock")
    broken = sum(not LINE.fullmatch(line) for line in torn)
    cpus = [m[1] for m in map(LINE.fullmatch, lines) if m]
    turns = sum(a != b for a, b in zip(cpus, cpus[1:], strict=False))
    if turns < len(cpus) // 4:
        raise CheckFailed(
            f"the CPUs changed turns {turns} times in {len(cpus)} lines: one waited for the "
            "other to finish (a lock held for more than one line?), so the lines are whole "
            "because one CPU was idle, not because the lock took them one line at a time"
        )
    return (
        f"{turns} changes of turn in {len(cpus)} lines; without the lock, {broken} of "
        f"{len(torn)} lines torn in a boot with 'nolock'"
    )


CHECKS = [
    Check(
        "each line comes out whole while both CPUs print",
        "spin_lock takes a ticket with an atomic fetch-and-add and waits for it to be served; "
        "say() holds uart_lock around its kprintf",
        lines_are_whole,
    ),
    Check(
        "the CPUs take turns, line by line",
        "the lock is taken for one line and given back after it (spin_unlock serves the next "
        "ticket), so a waiting CPU gets the next line",
        cpus_take_turns,
    ),
]
