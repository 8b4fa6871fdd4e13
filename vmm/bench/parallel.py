"""``pyvmm bench parallel``: the workload N times at once, three ways, for N = 1, 2, ...

N host processes started together; N pyvmm containers started together (``container
run --rm``, the input through a bind mount); and one Linux VM of N vCPUs whose /init
starts N copies on its /dev/vda (``pyvmm.copies=N``, vmm/guests/linux.py). Every copy
runs the same executable on the same input and must print the line computed from it
(workload.py). Three figures per row and N:

- **to the last result line**: from the start to the moment the last of the N lines
  had arrived, which is when a user has every answer;
- **CPU**: user + system time of everything the row ran, pyvmm and the guests included
  (``RUSAGE_CHILDREN``, which counts every process waited for, however deep);
- **Linux to /init** (the VM only): when the kernel started /init, i.e. the boot at N
  vCPUs, so that what more vCPUs cost at boot shows beside what they bring later.

The rows take turns run by run, so the machine's load falls on all of them alike.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import subprocess
import tempfile

from vmm.bench.measure import ProcessResult, pyvmm_command, run_processes, summary
from vmm.bench.rows import (
    DATA,
    IMAGE_REF,
    LINUX_GUEST_MEMORY,
    LINUX_INIT_MARK,
    Workspace,
    workload_image,
)
from vmm.bench.workload import PREFIX, expected_line, make_command
from vmm.errors import PyvmmError
from vmm.guests import tiny as guest

ROWS = ("host", "containers", "linux-vm")
# Small: the Linux guest's reads go through virtio-blk with its ring 0 emulated under PVM.
DEFAULT_SIZE = 16 << 20
TIMEOUT = 1200.0  # an SMP Linux boot under PVM on a loaded host takes minutes


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _line_ends(proc: ProcessResult, expected: bytes) -> list[int]:
    """Offsets of the end of each result line in ``proc``'s output, each checked."""
    ends, at, out = [], 0, proc.stdout
    while (start := out.find(PREFIX, at)) >= 0:
        if start and out[start - 1 : start] != b"\n":
            at = start + 1  # "workload: " inside another line: not a result
            continue
        end = out.find(b"\n", start)
        end = len(out) if end < 0 else end
        line = out[start:end].rstrip(b"\r")
        if line != expected:
            raise PyvmmError(f"{shlex.join(proc.argv)} printed {line!r}, not {expected!r}")
        ends.append(end)
        at = end
    return ends


def run_once(argvs: list[list[str]], copies: int, expected: bytes) -> dict:
    """Start ``argvs`` together; the figures above, once all ``copies`` lines are in."""
    cpu = _children_cpu()
    procs = run_processes(argvs, TIMEOUT)
    cpu = _children_cpu() - cpu
    arrived = []
    for proc in procs:
        if proc.status != 0:
            tail = (proc.stdout[-800:] + proc.stderr[-800:]).decode(errors="replace")
            raise PyvmmError(f"{shlex.join(proc.argv)} ended with {proc.status}: {tail}")
        arrived += [proc.time_of(end - 1) for end in _line_ends(proc, expected)]
    if len(arrived) != copies:
        raise PyvmmError(f"{len(arrived)} result lines where {copies} copies ran")
    figures = {"last_line_s": max(arrived), "cpu_s": cpu}
    init = procs[0].stdout.find(LINUX_INIT_MARK)
    if len(procs) == 1 and init >= 0:
        figures["init_s"] = procs[0].time_of(init)
    return figures


class Parallel:
    """The three rows' commands, for ``n`` copies each, and what they need."""

    def __init__(self, root: str, size: int, scratch: str):
        from vmm.guests import linux as linux_guest

        if os.geteuid() != 0:
            raise PyvmmError("pyvmm bench parallel needs root (its containers)")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise PyvmmError("pyvmm bench parallel needs a usable /dev/kvm (its VM)")
        self.commands: list[list[str]] = []
        guest.ensure_built(guest.WORKLOAD)
        self.image = os.path.join(scratch, "input.img")
        self.commands.append(make_command(self.image, size))
        subprocess.run(self.commands[-1], check=True, stdout=subprocess.DEVNULL)
        self.expected = expected_line(self.image)
        workload_image(Workspace(self.image, self.expected, scratch, root), self.commands)
        self.root = root
        self.build = linux_guest.build_kernel(say=lambda m: None, smp=True)
        self.initramfs = linux_guest.build_initramfs()
        self.copies_param = linux_guest.COPIES_PARAM

    def argvs(self, row: str, n: int) -> list[list[str]]:
        if row == "host":
            return [[guest.WORKLOAD, self.image]] * n
        if row == "containers":
            return [[
                *pyvmm_command(), "--root", self.root, "container", "run", "--rm",
                "-v", f"{os.path.dirname(self.image)}:{DATA}", IMAGE_REF,
                "/bin/workload", f"{DATA}/{os.path.basename(self.image)}",
            ]] * n  # fmt: skip
        return [[
            *pyvmm_command(), "boot", "--cpus", str(n), "--kernel", self.build.vmlinux,
            "--initrd", self.initramfs, "--memory", LINUX_GUEST_MEMORY, "--disk", self.image,
            "--cmdline", f"console=ttyS0 {self.copies_param}={n}",
        ]]  # fmt: skip


def measure(root: str, runs: int = 3, counts: tuple[int, ...] | None = None,
            size: int = DEFAULT_SIZE, show=lambda _text: None) -> dict:  # fmt: skip
    counts = counts or tuple(sorted({1, 2, os.cpu_count() or 1}))
    scratch = tempfile.mkdtemp(prefix="pyvmm-bench-parallel-")
    try:
        bench = Parallel(root, size, scratch)
        for row in ROWS[:2]:  # a warm-up of the cheap rows: page cache, image store
            run_once(bench.argvs(row, 1), 1, bench.expected)
        samples: dict[tuple[str, int], list[dict]] = {(r, n): [] for n in counts for r in ROWS}
        for i in range(runs):
            for n in counts:
                for row in ROWS:
                    show(f"run {i + 1}/{runs}: {row}, {n} at once")
                    samples[(row, n)].append(run_once(bench.argvs(row, n), n, bench.expected))
        rows = {}
        for (row, n), figures in samples.items():
            rows.setdefault(row, {})[n] = {
                key: summary([f[key] for f in figures]) for key in figures[0]
            }
        return {
            "host_cpus": os.cpu_count(),
            "input_bytes": size,
            "runs": runs,
            "rows": rows,
            "commands": {row: shlex.join(bench.argvs(row, counts[-1])[0]) for row in ROWS},
            "prepared_with": [shlex.join(c) for c in bench.commands],
            "load_average": os.getloadavg()[0],
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


LABELS = {"host": "host processes", "containers": "pyvmm containers",
          "linux-vm": "Linux VM, N vCPUs (pyvmm)"}  # fmt: skip


def table(r: dict) -> str:
    lines = [f"{'N':>3}  {'row':<26} {'last line (s)':>13} {'CPU (s)':>8} {'to /init (s)':>12}"]
    counts = sorted({int(n) for row in r["rows"].values() for n in row})
    for n in counts:
        for row in ROWS:
            fig = r["rows"][row].get(n) or r["rows"][row].get(str(n))
            init = f"{fig['init_s']['median']:>12.2f}" if "init_s" in fig else ""
            lines.append(
                f"{n:>3}  {LABELS[row]:<26} {fig['last_line_s']['median']:>13.3f}"
                f" {fig['cpu_s']['median']:>8.3f} {init}"
            )
    lines.append(
        f"medians of {r['runs']}; {r['input_bytes'] >> 20} MiB input; host CPUs "
        f"{r['host_cpus']}, load average {r['load_average']:.1f}"
    )
    return "\n".join(lines)
