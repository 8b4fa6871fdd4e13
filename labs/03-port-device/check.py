"""Lab 3's checks: the student's CMOS device answers on a bus, and a real guest reads the
time from it."""

import calendar
import re
import sys
import time
from pathlib import Path

from vmm import guest
from vmm.lab import Check, CheckFailed, run_student, tail

TITLE = "A port-I/O device of your own (CMOS RTC)"
CONCEPT = "port I/O exits, the bus, a device that knows nothing of KVM"
NEEDS = ("kvm",)
FILES = ("cmos.py",)

# Put the student's device on a bus (and, with "boot", in a machine running the lab's
# guest) in a process of its own, so that a crash or a hang in it cannot take the
# check down with it.
_HARNESS = """
import sys
from vmm.bus import Bus
from cmos import Cmos

if sys.argv[1] == "bus":
    bus = Bus("port I/O")
    bus.insert(Cmos(), 0x70, 2)
    for register in (4, 2, 0, 0x32):
        bus.write(0x70, bytes([register]))
        print(register, bus.read(0x71, 1)[0])
else:
    from vmm.machine import Machine, MachineConfig
    out = lambda data: sys.stdout.write(data.decode("latin-1"))
    with Machine(MachineConfig(sys.argv[2], 1 << 20, output=out)) as machine:
        machine.io_bus.insert(Cmos(), 0x70, 2)
        result = machine.run()
    print(result.reason)
    sys.exit(result.status)
"""


def _seconds_of_day(h: int, m: int, s: int) -> int:
    return h * 3600 + m * 60 + s


def _utc() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())


def _near_now(h: int, m: int, s: int) -> bool:
    now = calendar.timegm(time.gmtime()) % 86400
    return (
        min(abs(now - _seconds_of_day(h, m, s)), 86400 - abs(now - _seconds_of_day(h, m, s))) <= 5
    )


def answers_on_a_bus(workdir: Path) -> str:
    proc = run_student([sys.executable, "-c", _HARNESS, "bus"], workdir, timeout=20)
    values = dict(
        map(int, line.split())
        for line in proc.stdout.splitlines()
        if re.fullmatch(r"\d+ \d+", line)
    )
    if proc.returncode or len(values) != 4:
        raise CheckFailed(f"the device failed on a bus:\n{tail(proc)}")
    digits = {r: (v >> 4) * 10 + (v & 15) for r, v in values.items()}
    if any(v & 15 > 9 or v >> 4 > 9 for r, v in values.items() if r != 0x32):
        raise CheckFailed(f"registers 4, 2, 0 read {values[4]:#x} {values[2]:#x} {values[0]:#x}")
    if not _near_now(digits[4], digits[2], digits[0]):
        raise CheckFailed(
            f"the device says {digits[4]:02}:{digits[2]:02}:{digits[0]:02}, UTC is {_utc()}"
        )
    return f"registers 4, 2, 0 read {values[4]:#04x} {values[2]:#04x} {values[0]:#04x} (BCD)"


def guest_reads_the_time(workdir: Path) -> str:
    guest.ensure_built(guest.CMOS_LAB)
    proc = run_student(
        [sys.executable, "-c", _HARNESS, "boot", guest.CMOS_LAB], workdir, timeout=30
    )
    m = re.search(r"^cmos lab: the RTC says (\d\d):(\d\d):(\d\d)$", proc.stdout, re.M)
    if proc.returncode or not m:
        raise CheckFailed(f"the guest did not print a time:\n{tail(proc)}")
    if not _near_now(*map(int, m.groups())):
        raise CheckFailed(f"the guest printed {':'.join(m.groups())}, UTC is {_utc()}")
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
