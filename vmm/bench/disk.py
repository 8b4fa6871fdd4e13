"""``pyvmm bench disk``: the virtio-blk path, guest beside host.

- the workload on one image, whole process: the static binary on the host, and
  ``pyvmm boot --disk`` (exit-loop notifications, then ioeventfd);
- raw sequential reads inside the tiny VM (``guest/demo/rawread.c``) with 64 KiB and
  1 MiB requests, exit loop and ioeventfd, timed in-process between the program's
  "start" and "bytes=" lines; beside ``dd`` reading the same file on the host (the
  page cache is warm for both, so this is the cost of the path, not of the disk).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from vmm.bench.measure import pyvmm_command, repeat, wall_time
from vmm.bench.workload import expected_line, make_command
from vmm.errors import PyvmmError
from vmm.guests import tiny as guest
from vmm.kvm import Kvm
from vmm.vm.machine import Machine, MachineConfig

CHUNKS = (64 << 10, 1 << 20)


def _warm(image: str) -> None:
    """Read the whole image once, so the run that follows finds it in the page cache.

    This host reclaims idle page cache on its own (DAMON), so without this a run could
    read from the disk while the one before it read from memory.
    """
    with open(image, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


def _raw_read_rate(kvm: Kvm, image: str, chunk: int, ioeventfd: bool) -> float:
    """MiB/s the guest program read, between its own start and end lines."""
    _warm(image)
    lines: list[tuple[float, bytes]] = []
    pending = bytearray()

    def output(data: bytes) -> None:
        pending.extend(data)
        if data == b"\n":
            lines.append((time.perf_counter(), bytes(pending)))
            pending.clear()

    config = MachineConfig(
        guest.KERNEL,
        cmdline=f"-- /dev/vda {chunk}",
        program=guest.RAWREAD,
        output=output,
        disks=((image, True),),
        ioeventfd=ioeventfd,
    )
    with Machine(config, kvm) as m:
        result = m.run()
    start = next((t for t, line in lines if line.startswith(b"rawread: start")), None)
    end = next(((t, line) for t, line in lines if line.startswith(b"rawread: bytes=")), None)
    if result.status != 0 or start is None or end is None:
        raise PyvmmError(f"rawread in the guest failed: {result.reason}")
    nbytes = int(end[1].split(b"=")[1])
    return nbytes / (end[0] - start) / (1 << 20)


def _dd_rate(image: str, chunk: int) -> float:
    _warm(image)
    size = os.path.getsize(image)
    seconds = wall_time(["dd", f"if={image}", "of=/dev/null", f"bs={chunk}"])
    return size / seconds / (1 << 20)


def measure(runs: int = 5, size: int = 256 << 20) -> dict:
    guest.ensure_built(guest.KERNEL, guest.WORKLOAD, guest.RAWREAD)
    kvm = Kvm()
    pyvmm = [*pyvmm_command(), "boot"]
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "input.img")
        subprocess.run(make_command(image, size), check=True, stdout=subprocess.DEVNULL)
        expected = expected_line(image).decode()

        def checked(argv: list[str]) -> float:
            t = time.perf_counter()
            out = subprocess.run(argv, capture_output=True, text=True)
            elapsed = time.perf_counter() - t
            if out.returncode != 0 or expected not in out.stdout:
                raise PyvmmError(f"{' '.join(argv)} did not print {expected!r}")
            return elapsed

        workload = {
            "host": repeat(lambda: checked([guest.WORKLOAD, image]), runs),
            "vm": repeat(lambda: checked([*pyvmm, "--disk", image]), runs),
            "vm_ioeventfd": repeat(lambda: checked([*pyvmm, "--disk", image, "--ioeventfd"]), runs),
        }
        raw = {}
        for chunk in CHUNKS:
            for ioeventfd in (False, True):
                key = f"vm_{chunk >> 10}k" + ("_ioeventfd" if ioeventfd else "")
                raw[key] = repeat(
                    lambda c=chunk, e=ioeventfd: _raw_read_rate(kvm, image, c, e), runs
                )
            raw[f"dd_{chunk >> 10}k"] = repeat(lambda c=chunk: _dd_rate(image, c), runs)
    kvm.close()
    return {"size": size, "expected": expected, "workload_s": workload, "raw_mib_s": raw}


def table(r: dict) -> str:
    w, raw = r["workload_s"], r["raw_mib_s"]
    host = w["host"]["median"]
    rows = [f"workload on a {r['size'] >> 20} MiB image, whole process (median s, ratio to host)"]
    for key, label in (("host", "host"), ("vm", "tiny VM, exit loop"),
                       ("vm_ioeventfd", "tiny VM, ioeventfd")):  # fmt: skip
        m = w[key]["median"]
        rows.append(f"  {label:<28}{m:8.3f} s   x{m / host:.2f}")
    dd = raw["dd_1024k"]["median"]
    rows.append("raw sequential read (median MiB/s, ratio to dd with 1 MiB blocks)")
    for key in sorted(raw):
        m = raw[key]["median"]
        rows.append(f"  {key:<28}{m:8.0f}     x{m / dd:.2f}")
    rows.append(f"medians of {w['host']['runs']} runs each; targets: VM within x1.5 of host, "
                "1 MiB reads at least x0.33 of dd")  # fmt: skip
    return "\n".join(rows)
