"""Lab 3's checks: the student's CMOS device answers on a bus, and a real guest reads the
time from it."""

import glob
import re
import secrets
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail
from vmm.guests import tiny as guest

TITLE = "A port-I/O device of your own (CMOS RTC)"
CONCEPT = "port I/O exits, the bus, a device that knows nothing of KVM"
NEEDS = ("kvm",)
FILES = ("cmos.py",)

# Put the student's device on a bus (and, with "boot", in a machine running the lab's
# guest) in a process of its own, so that a crash or a hang in it cannot take the
# check down with it.
_HARNESS = """
import sys
from vmm.vm.bus import Bus
from cmos import Cmos

if sys.argv[1] == "bus":
    bus = Bus("port I/O")
    bus.insert(Cmos(), 0x70, 2)
    for register in (4, 2, 0, 0x84, 0x32):
        bus.write(0x70, bytes([register]))
        print(register, bus.read(0x71, 1)[0])
else:
    from vmm.vm.machine import Machine, MachineConfig
    out = lambda data: sys.stdout.write(data.decode("latin-1"))
    with Machine(MachineConfig(sys.argv[2], 1 << 20, output=out)) as machine:
        machine.io_bus.insert(Cmos(), 0x70, 2)
        result = machine.run()
    print(result.reason)
    sys.exit(result.status)
"""


_DAY = 1704067200  # 2024-01-01 00:00:00 UTC, the day of the check's clock
# The time zone of the student's process: local time is UTC + 5:30 there, so a device
# that answers local time is told apart from one that answers UTC (POSIX TZ, offset west).
_TZ = "LAB-5:30"


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise CheckFailed(
            "the check sets the device's clock with libfaketime, which is not installed "
            "(apt-get install libfaketime; scripts/setup.sh does)"
        )
    return found[0]


def _clock() -> tuple[tuple[int, int, int], dict[str, str]]:
    """A time of day drawn now, every field 10 or more (so that binary and BCD differ)
    and no two fields alike (so that a device answering one for another is caught, every
    time), and the environment that stops the student's process's clock at it:
    libfaketime, which answers the C library's clock_gettime and time."""
    h = 10 + secrets.randbelow(14)
    m = secrets.choice([v for v in range(10, 60) if v != h])
    s = secrets.choice([v for v in range(10, 60) if v not in (h, m)])
    env = {
        "LD_PRELOAD": _libfaketime(),
        "FAKETIME": str(_DAY + h * 3600 + m * 60 + s),
        "FAKETIME_FMT": "%s",  # an absolute time, in seconds: the clock stands still there
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "TZ": _TZ,
    }
    return (h, m, s), env


def bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _hms(t: tuple[int, int, int]) -> str:
    return "{:02}:{:02}:{:02}".format(*t)


def answers_on_a_bus(workdir: Path) -> str:
    (h, m, s), env = _clock()
    proc = run_student([sys.executable, "-c", _HARNESS, "bus"], workdir, timeout=20, env=env)
    values = dict(
        map(int, line.split())
        for line in proc.stdout.splitlines()
        if re.fullmatch(r"\d+ \d+", line)
    )
    if proc.returncode or len(values) != 5:
        raise CheckFailed(f"the device failed on a bus:\n{tail(proc)}")
    got = (values[4], values[2], values[0])
    want = tuple(bcd(v) for v in (h, m, s))
    if got != want:
        raise CheckFailed(
            f"with the clock at {_hms((h, m, s))} UTC, registers 4, 2, 0 read "
            + " ".join(f"{v:#04x}" for v in got)
            + "; that time in BCD is "
            + " ".join(f"{v:#04x}" for v in want)
        )
    if values[0x84] != want[0]:
        raise CheckFailed(
            f"register 0x84 (4 with bit 7, the NMI mask, set) read {values[0x84]:#04x}, "
            f"not the hours {want[0]:#04x}"
        )
    return "registers 4, 2, 0 read " + " ".join(f"{v:#04x}" for v in got) + " (BCD)"


def guest_reads_the_time(workdir: Path) -> str:
    guest.ensure_built(guest.CMOS_LAB)
    clock, env = _clock()
    proc = run_student(
        [sys.executable, "-c", _HARNESS, "boot", guest.CMOS_LAB], workdir, timeout=30, env=env
    )
    m = re.search(r"^cmos lab: the RTC says (\d\d):(\d\d):(\d\d)$", proc.stdout, re.M)
    if proc.returncode or not m:
        raise CheckFailed(f"the guest did not print a time:\n{tail(proc)}")
    if tuple(map(int, m.groups())) != clock:
        raise CheckFailed(
            f"the guest printed {':'.join(m.groups())}; the clock said {_hms(clock)} UTC"
        )
    return m.group(0)


CHECKS = [
    Check(
        "the device answers the time on a port-I/O bus",
        "remember the register written to offset 0; on a read of offset 1 return it as BCD",
        answers_on_a_bus,
    ),
    Check(
        "the guest reads the time from it",
        "run 'pyvmm boot --kernel guest/build/cmos.bin --trace': which ports does it use, "
        "and what does it read back?",
        guest_reads_the_time,
    ),
]
