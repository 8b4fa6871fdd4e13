"""``pyvmm bench vcpus``: N busy vCPUs keep N host CPUs busy.

Each vCPU is a thread in ``KVM_RUN`` (vmm/vm/vcpus.py), and the claim is that cffi releases
the GIL around that call: if it did not, one vCPU in the guest would stop the others, and
the process would never use more than one host CPU however many vCPUs were busy. The
tiny kernel runs ``spin`` (a ring-3 loop, no exits) on the boot CPU, and with
``ap_spin`` on its command line every other CPU loops in ring 0 instead of halting
(guest/kernel/smp.c). The figure is the process's CPU time (user + system, from
``wait4``) over its wall time: about N on an idle host with N or more CPUs. Under PVM
the guest's ring 3 counts as user time and its emulated ring 0 as system time.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time

from vmm.bench.measure import pyvmm_command, summary
from vmm.errors import PyvmmError
from vmm.guests import tiny as guest

SPIN_MILLIONS = 300  # the boot CPU's loop: about a second here


def _run(cpus: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``pyvmm boot --cpus N`` of the spinning guest."""
    argv = [
        *pyvmm_command(), "boot", "--cpus", str(cpus), "--program", guest.SPIN,
        "--cmdline", f"console=ttyS0 ap_spin -- {SPIN_MILLIONS}",
    ]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise PyvmmError(f"{shlex.join(argv)} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(runs: int = 3, counts: tuple[int, ...] | None = None) -> dict:
    guest.ensure_built(guest.KERNEL, guest.SPIN)
    counts = counts or tuple(range(1, min(os.cpu_count() or 1, 4) + 1))
    result = {"host_cpus": os.cpu_count(), "rows": {}}
    for n in counts:
        samples = [_run(n) for _ in range(runs)]
        result["rows"][n] = {
            "wall_s": summary([w for w, _ in samples]),
            "cpu_s": summary([c for _, c in samples]),
            "cpus_busy": summary([c / w for w, c in samples]),
        }
    result["load_average"] = os.getloadavg()[0]
    return result


def table(r: dict) -> str:
    lines = [f"{'vCPUs':>5}  {'wall (s)':>9}  {'CPU (s)':>8}  {'host CPUs busy':>14}"]
    for n, row in r["rows"].items():
        lines.append(
            f"{n:>5}  {row['wall_s']['median']:>9.2f}  {row['cpu_s']['median']:>8.2f}"
            f"  {row['cpus_busy']['median']:>14.2f}"
        )
    lines.append(
        f"medians; host CPUs: {r['host_cpus']}, load average {r['load_average']:.1f} "
        "(other work on the host lowers the figure)"
    )
    return "\n".join(lines)
