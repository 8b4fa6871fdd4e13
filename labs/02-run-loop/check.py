"""Lab 2's checks: the student's run loop runs a given guest to its HLT.

The check drives the loop itself: it calls the student's ``main`` with pyvmm's
``Vcpu.run`` wrapped, so it sees every exit KVM returned to that process. A line that
reached stdout without the 49 port-I/O exits behind it did not come from the guest.
"""

import json
import secrets
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, require, run_student, tail
from vmm.guests import tiny as guest

TITLE = "Write the KVM run loop"
CONCEPT = "KVM_CREATE_VM, a memory slot, a vCPU, registers, KVM_RUN, exits"
NEEDS = ("kvm",)
FILES = ("run_loop.py",)

UART_DATA = 0x3F8
_REPORT = "lab check: exits "  # the harness's last line: what KVM_RUN returned, as JSON

# The student's main() with every KVM_RUN of the process recorded on its way back: the
# exit's kind, and for an OUT its port and bytes. /dev/kvm must be open at each one.
_HARNESS = """
import json, os, sys, traceback
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
except Exception as e:  # the exits it made so far still count
    traceback.print_exc()
    status = f"{type(e).__name__}: {e}"
sys.stdout.flush()
print("\\n" + sys.argv[2] + json.dumps({"status": status, "exits": exits}))
"""


_LINE = b"hello from the guest your run loop ran: "
_XOR = b"\xac\x34\x00"  # lodsb; xorb $0, %al: the key the check sets


def _guest(workdir: Path) -> tuple[Path, str]:
    """The lab's guest with a fresh word in its line, the line XORed with a fresh key
    (which the guest undoes byte by byte): only the OUTs of a real run carry it."""
    guest.ensure_built(guest.KVMHELLO_LAB)
    nonce, key = secrets.token_hex(4), 1 + secrets.randbelow(255)
    code = Path(guest.KVMHELLO_LAB).read_bytes()
    require(
        code.count(_XOR) == 1 and code.count(_LINE + b"NONCE---\n\0") == 1,
        "the lab's guest has changed: no line with a NONCE--- placeholder, or no XOR key",
    )
    line = _LINE + nonce.encode() + b"\n\0"
    code = code.replace(_LINE + b"NONCE---\n\0", bytes(b ^ key for b in line))
    path = workdir / "guest.bin"
    path.write_bytes(code.replace(_XOR, _XOR[:2] + bytes([key])))
    return path, line[:-2].decode()


def _run(workdir: Path) -> tuple[str, dict, object]:
    """Run the loop on a fresh guest: (the line it should print, the harness's report,
    the process)."""
    path, line = _guest(workdir)
    proc = run_student([sys.executable, "-c", _HARNESS, str(path), _REPORT], workdir, timeout=30)
    path.unlink()
    lines = proc.stdout.splitlines()
    reports = [x for x in lines if x.startswith(_REPORT)]
    proc.stdout = "\n".join(x for x in lines if not x.startswith(_REPORT))  # the loop's own
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
            f"({len(exits)} exits in all):\n{tail(proc)}"
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
