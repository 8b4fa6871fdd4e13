"""Lab 23's checks: with the student's lock (spinlock.c) around each line (race.c), two
CPUs printing at once give whole lines, and the lock is what keeps them whole.

Whether a race tears a line is up to the host's scheduler: on a loaded host the two vCPU
threads may seldom run at once, and a missing lock then goes unseen. So the checks do not
wait for a torn line. They watch the lock itself: at every byte the UART receives during
the race, a hook on the exit loop (``Machine.after_run``, the one ``--trace`` uses) reads
``uart_lock`` from guest memory while the writing vCPU is stopped in its exit. Under a
ticket lock, the CPU printing holds the ticket being served (``owner``) and ``next`` is past
it; each ticket served must cover one line from one CPU."""

import re
import subprocess
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, once, run_student, tail

TITLE = "A race between two vCPUs, and a lock"
CONCEPT = "shared device, torn output, atomic fetch-and-add, a fair (ticket) spinlock"
NEEDS = ("kvm",)
FILES = ("../../guest/kernel/spinlock.c", "../../guest/kernel/race.c")
CPUS = 2
LINE = re.compile(r"cpu (\d+) says line (\d+) of (\d+): all of it, in one piece")

# The tiny kernel, booted on CPUS vCPUs, with a hook that notes each byte written to the
# UART's THR with the vCPU that wrote it and uart_lock's two words at that moment. The
# kernel's memory is identity-mapped, so the symbol's address is its guest-physical one.
_HARNESS = """
import struct, sys
from vmm.devices.serial import COM1_BASE
from vmm.kvm import IoExit
from vmm.vm.machine import Machine, MachineConfig

kernel, program, lock, cpus, cmdline, notes = sys.argv[1:]
out = lambda data: (sys.stdout.write(data.decode("latin-1")), sys.stdout.flush())
config = MachineConfig(kernel, cmdline=cmdline, program=program, cpus=int(cpus), output=out)
seen = []
with Machine(config) as machine:
    def watch(vcpu, exit):
        if type(exit) is IoExit and exit.is_write and exit.port == COM1_BASE:
            nxt, owner = (0, 0)  # no symbol: race.c never uses the lock, the compiler left it out
            if lock:
                nxt, owner = struct.unpack("<II", machine.memory.read(int(lock, 16), 8))
            seen.append(f"{vcpu.index} {exit.data[0]} {nxt} {owner}")
    machine.after_run.append(watch)
    result = machine.run()
with open(notes, "w") as f:
    f.write("\\n".join(seen))
print(result.reason)
sys.exit(result.status)
"""


class Byte:
    """One byte the UART received: which vCPU wrote it, and uart_lock as it was then."""

    def __init__(self, note: str):
        cpu, char, self.next, self.owner = map(int, note.split())
        self.cpu, self.char = cpu, chr(char)

    @property
    def held(self) -> bool:
        return self.next != self.owner


def _locked_race(workdir: Path) -> tuple[list[Byte], str]:
    """The race with the student's lock, which both checks grade."""
    return once(workdir, ("spinlock.c", "race.c"), lambda: _race(workdir))


def _race(workdir: Path, *words: str) -> tuple[list[Byte], str]:
    """The bytes the CPUs wrote in the race, in the order the UART got them, and the
    run's tail."""
    files = {f"kernel/{name}": workdir / name for name in ("spinlock.c", "race.c")}
    build = build_guest(workdir, files, ["build/kernel.elf", "build/hello"])
    kernel = build / "kernel.elf"
    symbols = subprocess.run(["nm", str(kernel)], capture_output=True, text=True).stdout
    lock = re.search(r"^([0-9a-f]+) [bBdD] uart_lock$", symbols, re.M)
    notes = build / "race-bytes.txt"
    address = lock[1] if lock else ""
    harness = [sys.executable, "-c", _HARNESS, str(kernel), str(build / "hello"), address,
               str(CPUS), " ".join(("race", *words)), str(notes)]  # fmt: skip
    # A race takes half a second here, a few at a load of 13: one still going after
    # 10 s waits for a lock that is never handed on.
    try:
        proc = run_student(harness, workdir, timeout=10)
    except CheckFailed as e:
        raise CheckFailed(f"{e}: a CPU waits for a lock that is never handed on?") from None
    if proc.returncode != 0 or "race: " not in proc.stdout:
        raise CheckFailed(f"the race did not finish (status {proc.returncode}):\n{tail(proc)}")
    written = [Byte(note) for note in notes.read_text().splitlines()]
    text = "".join(b.char for b in written)
    start = text.find(" CPUs up\n") + len(" CPUs up\n")
    return written[start : text.find("race: ", start)], tail(proc)


def _lines(written: list[Byte]) -> list[str]:
    return "".join(b.char for b in written).splitlines()


def _torn(written: list[Byte]) -> int:
    return sum(not LINE.fullmatch(line) for line in _lines(written))


def _tickets(written: list[Byte]) -> list[list[Byte]]:
    """The race's bytes cut where the ticket being served changes."""
    runs: list[list[Byte]] = []
    for b in written:
        if runs and runs[-1][-1].owner == b.owner:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def printed_under_the_lock(workdir: Path) -> str:
    written, end = _locked_race(workdir)
    free = [b for b in written if not b.held]
    if free:
        raise CheckFailed(
            f"{len(free)} of {len(written)} bytes of the race were written while uart_lock "
            f"was free ({_torn(written)} of {len(_lines(written))} lines torn this time): is "
            "each line printed between spin_lock and spin_unlock, and does spin_lock take a "
            "ticket (next) that spin_unlock serves (owner)?"
        )
    for run in _tickets(written):
        if len({b.cpu for b in run}) > 1:
            raise CheckFailed(
                f"while ticket {run[0].owner} was served, CPUs {sorted({b.cpu for b in run})} "
                "both wrote: two CPUs held the lock at once (is the ticket taken with one "
                "atomic fetch-and-add?)"
            )
    lines = _every_line_once(written, end)
    return f"{len(written)} bytes in {len(lines)} lines from {CPUS} CPUs, each under the lock"


def _every_line_once(written: list[Byte], end: str) -> list[str]:
    lines = _lines(written)
    said = sorted((int(m[1]), int(m[2])) for m in map(LINE.fullmatch, lines) if m)
    total = int(LINE.fullmatch(lines[0])[3]) if lines and LINE.fullmatch(lines[0]) else 0
    if said != [(cpu, n) for cpu in range(CPUS) for n in range(1, total + 1)] or not total:
        raise CheckFailed(f"lines lost, torn or repeated: {len(lines)} lines:\n{end}")
    return lines


def one_line_per_ticket(workdir: Path) -> str:
    written, end = _locked_race(workdir)
    _every_line_once(written, end)
    for run in _tickets(written):
        if (lines := "".join(b.char for b in run).count("\n")) > 1:
            raise CheckFailed(
                f"CPU {run[0].cpu} printed {lines} lines under ticket {run[0].owner}: the lock "
                "was held for more than one line, so the other CPU was idle, waiting, and the "
                "lines are whole because one CPU waited for the other to finish"
            )
    loose, _ = _race(workdir, "nolock")
    cpus = [run[0].cpu for run in _tickets(written)]
    turns = sum(a != b for a, b in zip(cpus, cpus[1:], strict=False))
    return (
        f"{len(cpus)} tickets served, one line each, {turns} changes of turn; without the "
        f"lock, {_torn(loose)} of {len(_lines(loose))} lines torn in a boot with 'nolock'"
    )


CHECKS = [
    Check(
        "each line is printed under the lock, by one CPU at a time",
        "spin_lock takes a ticket with an atomic fetch-and-add on next and waits until owner "
        "is that ticket; say() holds uart_lock around its kprintf",
        printed_under_the_lock,
    ),
    Check(
        "the lock is held for one line, then handed on",
        "the lock is taken for one line and given back after it (spin_unlock serves the next "
        "ticket), so a waiting CPU gets the next line",
        one_line_per_ticket,
    ),
]
