"""Lab 21's checks: the student's snapshot goes on in a new process without a boot, and a
register changed in the manifest is the one the guest counts with."""

import re
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail

TITLE = "What is a VM's state: snapshot, change, restore"
CONCEPT = "registers, memory and devices as data; pause, snapshot, restore (docs/state.md)"
NEEDS = ("kvm",)
FILES = ("vm_state.py",)


def _run(workdir: Path, delta: int) -> tuple[int, list[int], str]:
    proc = run_student(["vm_state.py", str(delta)], workdir, timeout=120)
    printed = re.search(r"last count before the snapshot: (\d+)", proc.stdout)
    restored = re.search(r"restored guest: ([\d ]*)", proc.stdout)
    if proc.returncode or not printed or not restored:
        raise CheckFailed(
            f"vm_state.py {delta} did not report a snapshot and a restore:\n{tail(proc)}"
        )
    if "went on without a boot" not in proc.stdout:
        raise CheckFailed(f"the restored guest booted again: it was not restored:\n{tail(proc)}")
    return int(printed[1]), [int(n) for n in restored[1].split()], proc.stdout


def goes_on_from_the_snapshot(workdir: Path) -> str:
    printed, counts, out = _run(workdir, 0)
    steady = counts == list(range(counts[0], counts[0] + len(counts))) if counts else False
    if not steady or counts[0] != printed + 1:
        raise CheckFailed(
            f"after count {printed} the restored guest printed {counts}: its state did not "
            "carry over (was it paused and snapshotted?)"
        )
    return f"count {printed}, snapshot, then a new process: {' '.join(map(str, counts))}"


def a_changed_register_reaches_the_guest(workdir: Path) -> str:
    printed, counts, out = _run(workdir, 1000)
    if not counts or counts[0] != printed + 1001:
        raise CheckFailed(
            f"after count {printed} and +1000 in the manifest, the restored guest printed "
            f"{counts}, not {printed + 1001}...: the register holding n was not changed"
        )
    name = re.search(r"changed: (\w+)", out)
    return f"{name[1] if name else 'a register'} + 1000: the guest counts {counts[0]}"


CHECKS = [
    Check(
        "the restored guest goes on from the snapshot, without a boot",
        "pause, then snapshot through the control socket (vmm.control.api.request)",
        goes_on_from_the_snapshot,
    ),
    Check(
        "a register changed in the manifest reaches the guest",
        "the register holding n has the last count printed (or one more); change it in "
        "manifest['vcpus'][0]['regs'] and write the manifest back",
        a_changed_register_reaches_the_guest,
    ),
]
