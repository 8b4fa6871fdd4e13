"""Lab 2's checks: the student's run loop runs a given guest to its HLT.

The check drives the loop itself: it calls the student's ``main`` with pyvmm's
``Vcpu.run`` wrapped, so it sees every exit KVM returned to that process. A line that
reached stdout without the 49 port-I/O exits behind it did not come from the guest.
"""

import json
import secrets
import sys
from pathlib import Path

from vmm import guest
from vmm.lab import Check, CheckFailed, require, run_student, tail

TITLE = "Write the KVM run loop"
CONCEPT = "KVM_CREATE_VM, a memory slot, a vCPU, registers, KVM_RUN, exits"
NEEDS = ("kvm",)
FILES = ("run_loop.py",)

UART_DATA = 0x3F8
_REPORT = "lab check: exits "  # the harness's last line: what KVM_RUN returned, as JSON

# The student's main() with every KVM_RUN of the process recorded on its way back: the
# exit's kind, and for an OUT its port and bytes. /dev/kvm must be open at each one.
_HARNESS = """
import json, os, sys
from vmm.kvm import IoExit, Vcpu
import run_loop

exits, real_run = [], Vcpu.run

def holds_kvm():
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "/dev/kvm":
                return True
        except OSError:
            pass  # the listing's own descriptor, closed already
    return False

def run(self):
    exit = real_run(self)
    kvm = holds_kvm()
    out = isinstance(exit, IoExit) and exit.is_write
    exits.append([type(exit).__name__, exit.port if out else None,
                  bytes(exit.data).hex() if out else None, kvm])
    return exit

Vcpu.run = run
try:
    status = run_loop.main(sys.argv[1])
except SystemExit as e:
    status = e.code
sys.stdout.flush()
print("\\n" + sys.argv[2] + json.dumps({"status": status, "exits": exits}))
"""


def _guest(workdir: Path) -> tuple[Path, str]:
    """The lab's guest with a fresh word in its line, so that each run's line is new."""
    guest.ensure_built(guest.KVMHELLO_LAB)
    nonce = secrets.token_hex(4)
    code = Path(guest.KVMHELLO_LAB).read_bytes()
    require(b"NONCE---" in code, "the lab's guest has no NONCE--- placeholder")
    path = workdir / "guest.bin"
    path.write_bytes(code.replace(b"NONCE---", nonce.encode()))
    return path, f"hello from the guest your run loop ran: {nonce}"


def _run(workdir: Path) -> tuple[str, dict, object]:
    """Run the loop on a fresh guest: (the line it should print, the harness's report,
    the process)."""
    path, line = _guest(workdir)
    proc = run_student([sys.executable, "-c", _HARNESS, str(path), _REPORT], workdir, timeout=30)
    path.unlink()
    reports = [x for x in proc.stdout.splitlines() if x.startswith(_REPORT)]
    if not reports:
        raise CheckFailed(f"run_loop.main() did not return:\n{tail(proc)}")
    return line, json.loads(reports[-1][len(_REPORT) :]), proc


def prints_the_line(workdir: Path) -> str:
    line, report, proc = _run(workdir)
    exits = report["exits"]
    outs = [e for e in exits if e[0] == "IoExit" and e[1] == UART_DATA]
    sent = bytes.fromhex("".join(e[2] for e in outs)).decode("latin-1")
    want = len(line) + 1  # and its newline
    if len(outs) != want or sent != line + "\n" or not all(e[3] for e in exits):
        raise CheckFailed(
            f"expected {want} KVM_RUN exits for the guest's OUTs to {UART_DATA:#x}, made by "
            f"vcpu.run() with /dev/kvm open; the loop's process made {len(outs)} "
            f"({len(exits)} exits in all)"
        )
    if line not in proc.stdout.splitlines():
        raise CheckFailed(
            f"the guest sent '{line}' through {len(outs)} OUT exits; the loop printed:\n"
            f"{tail(proc)}"
        )
    return f"{len(outs)} OUT exits to {UART_DATA:#x}: '{line}'"


def stops_at_hlt(workdir: Path) -> str:
    _, report, proc = _run(workdir)
    kinds = [e[0] for e in report["exits"]]
    if not kinds or kinds[-1] != "HltExit" or kinds.count("HltExit") != 1:
        raise CheckFailed(
            f"the last of the {len(kinds)} exits should be the one HLT, after which the "
            f"loop returns; it was {kinds[-1] if kinds else 'none'}:\n{tail(proc)}"
        )
    if report["status"] != 0:
        raise CheckFailed(f"main() returned {report['status']!r} after the HLT, not 0")
    return f"status 0 after the guest's HLT, exit {len(kinds)}"


CHECKS = [
    Check(
        "the guest's line reaches stdout, an OUT exit per byte",
        "each OUT to port 0x3f8 is an IoExit with is_write set; exit.data holds the byte",
        prints_the_line,
    ),
    Check(
        "the loop ends with status 0 when the guest halts",
        "without an in-kernel irqchip, HLT makes KVM_RUN return an HltExit: return 0 there",
        stops_at_hlt,
    ),
]
