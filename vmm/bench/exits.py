"""``pyvmm bench exits``: what one VM exit costs in pyvmm, beside the same loop in C.

Three figures (medians over several runs):
  (a) VM creation to the first byte the tiny kernel sends to the UART, in-process;
      and for a flat guest, creation to its first exit, pyvmm beside C;
  (b) the cost of one port-I/O exit through pyvmm's exit loop for a guest doing N
      OUTs to the UART's scratch register, beside a minimal C VMM running the same guest
      (pyvmm and C take turns, run by run, so load changes fall on both);
  (c) the whole-process wall time of ``pyvmm boot`` of the bundled tiny guest;
  (d) where one exit's time goes: the guest of (b) run with more of pyvmm's exit path
      each time (``KVM_RUN`` called from Python and nothing else; then decoded into an
      exit object; then handed to the port bus with a device that does nothing; then
      the whole loop with the UART), so that each step's cost is a difference of two
      medians and no timer runs inside the loop.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time

from vmm.bench.measure import build_c, interleaved, pyvmm_command, repeat, wall_time
from vmm.guests import tiny as guest
from vmm.kvm import Kvm
from vmm.vm.machine import Machine, MachineConfig

C_SOURCE = os.path.join(os.path.dirname(__file__), "kvm_exit_loop.c")


def out_loop_guest(n: int) -> bytes:
    """16-bit real-mode code: N OUTs to COM1's scratch register, then the exit port.

    mov ecx, N ; mov dx, 0x3ff ; 1: out dx, al ; dec ecx ; jnz 1b
    mov dx, 0x501 ; out dx, al ; hlt
    """
    return (
        b"\x66\xb9" + struct.pack("<I", n)
        + b"\xba\xff\x03"
        + b"\xee\x66\x49\x75\xfb"
        + b"\xba\x01\x05\xee\xf4"
    )  # fmt: skip


def _pyvmm_run(kvm: Kvm, kernel: str, program: str | None = None):
    """Build and run one machine; return (creation time, first exit, first byte, end)."""
    marks: dict[str, float] = {}

    def output(_data: bytes) -> None:
        marks.setdefault("first_byte", time.perf_counter())

    def first_exit(_vcpu, _exit) -> None:
        marks.setdefault("first_exit", time.perf_counter())

    t0 = time.perf_counter()
    with Machine(MachineConfig(kernel, program=program, output=output), kvm) as m:
        marks["built"] = time.perf_counter()
        if program is None:  # the flat guest: note its first exit, then get out of the way
            m.after_run.append(first_exit)
        m.run()
        marks["end"] = time.perf_counter()
    return t0, marks


class _NullDevice:
    """A device that does nothing: what is left of (d)'s "bus" step is the bus's own."""

    def read(self, offset: int, size: int) -> bytes:
        return bytes(size)

    def write(self, offset: int, data: bytes) -> None:
        pass


def _phase_loops(n: int) -> dict:
    """(d): for each step, a function of a fresh machine that makes ``n`` exits."""
    from vmm.devices.serial import COM1_BASE, UART_NR_PORTS
    from vmm.kvm._kvm import lib
    from vmm.vm.bus import Bus
    from vmm.vm.machine import _port_io

    def ioctl_only(m: Machine) -> None:
        run, fd, request = lib.kvm_ioctl_val, m.vcpu.fd, lib.KVM_RUN
        for _ in range(n):
            run(fd, request, 0)

    def decoded(m: Machine) -> None:
        run = m.vcpu.run
        for _ in range(n):
            run()

    def bus(m: Machine) -> None:
        run, null = m.vcpu.run, Bus("port I/O")
        null.insert(_NullDevice(), COM1_BASE, UART_NR_PORTS)
        for _ in range(n):
            _port_io(null, run())

    return {
        "kvm_run": ioctl_only,
        "decode": decoded,
        "bus": bus,
        "uart": lambda m: m.run(),  # the whole loop: n exits, then the exit port
    }


def measure(runs: int = 7, n_exits: int = 20000) -> dict:
    guest.ensure_built(guest.KERNEL, guest.DEMO_PROGRAM)
    c_loop = build_c(C_SOURCE, "kvm_exit_loop")
    kvm = Kvm()
    with tempfile.TemporaryDirectory() as tmp:
        flat = os.path.join(tmp, "outloop.bin")
        with open(flat, "wb") as f:
            f.write(out_loop_guest(n_exits))
        first = os.path.join(tmp, "first.bin")
        with open(first, "wb") as f:
            f.write(out_loop_guest(1))

        def c_figures(path: str) -> dict[str, float]:
            out = subprocess.run([c_loop, path], capture_output=True, text=True, check=True).stdout
            return {k: float(v) for k, v in (line.split() for line in out.splitlines())}

        def py_first_byte() -> float:
            t0, marks = _pyvmm_run(kvm, guest.KERNEL, guest.DEMO_PROGRAM)
            return (marks["first_byte"] - t0) * 1e3

        def py_first_exit() -> float:
            t0, marks = _pyvmm_run(kvm, first)
            return (marks["first_exit"] - t0) * 1e3

        def py_per_exit() -> float:
            with Machine(MachineConfig(flat), kvm) as m:
                t = time.perf_counter()
                m.run()
                return (time.perf_counter() - t) / (n_exits + 1) * 1e6

        def phase(loop) -> float:
            with Machine(MachineConfig(flat), kvm) as m:
                t = time.perf_counter()
                loop(m)
                return (time.perf_counter() - t) / n_exits * 1e6

        pyvmm = [*pyvmm_command(), "boot"]
        result = {
            "first_byte_ms": repeat(py_first_byte, runs),
            "first_exit_ms": interleaved(
                {
                    "pyvmm": py_first_exit,
                    "c": lambda: c_figures(first)["create_to_first_exit"] / 1e3,
                },
                runs,
            ),
            "per_exit_us": interleaved(
                {"pyvmm": py_per_exit, "c": lambda: c_figures(flat)["per_exit"]}, runs
            ),
            "phases_us": interleaved(
                {
                    "c": lambda: c_figures(flat)["per_exit"],
                    **{k: lambda f=f: phase(f) for k, f in _phase_loops(n_exits).items()},
                },
                runs,
            ),
            "boot_process_ms": repeat(lambda: wall_time(pyvmm) * 1e3, runs),
            "python_start_ms": repeat(
                lambda: wall_time([sys.executable, "-c", "pass"]) * 1e3, runs
            ),
            "python_click_ms": repeat(
                lambda: wall_time([sys.executable, "-c", "import click"]) * 1e3, runs
            ),
            "n_exits": n_exits,
        }
    kvm.close()
    return result


def table(r: dict) -> str:
    def med(d):
        return d["median"]

    def ratio(pair):
        return f"{med(pair['pyvmm']) / med(pair['c']):.2f}"

    pe, fe = r["per_exit_us"], r["first_exit_ms"]
    rows = [
        ("figure", "pyvmm", "C floor", "pyvmm/C", "target"),
        ("(a) creation -> first serial byte, tiny kernel (ms)",
         f"{med(r['first_byte_ms']):.3f}", "", "", "< 1.0"),
        ("(a) creation -> first exit, flat guest (ms)",
         f"{med(fe['pyvmm']):.3f}", f"{med(fe['c']):.3f}", ratio(fe), ""),
        (f"(b) per port-I/O exit, ring 0, {r['n_exits']} OUTs (us)",
         f"{med(pe['pyvmm']):.2f}", f"{med(pe['c']):.2f}", ratio(pe), "<= 1.10"),
        ("(c) pyvmm boot, whole process (ms)", f"{med(r['boot_process_ms']):.1f}", "", "", "< 120"),
        ("    python -c pass (ms)", f"{med(r['python_start_ms']):.1f}", "", "", ""),
        ("    python -c 'import click' (ms)", f"{med(r['python_click_ms']):.1f}", "", "", ""),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.append(f"medians of {r['first_byte_ms']['runs']} runs each")
    ph = {k: med(v) for k, v in r["phases_us"].items()}
    steps = [
        ("the C VMM's whole exit", ph["c"]),
        ("KVM_RUN called from Python (cffi, GIL released and taken)", ph["kvm_run"] - ph["c"]),
        ("decoding kvm_run into an IoExit", ph["decode"] - ph["kvm_run"]),
        ("the port bus, to a device that does nothing", ph["bus"] - ph["decode"]),
        ("the exit loop and the UART's register", ph["uart"] - ph["bus"]),
    ]
    lines.append(f"(d) one exit, step by step (us; differences of medians; all {ph['uart']:.2f})")
    lines += [f"    {name:<60}{us:>+7.2f}" for name, us in steps]
    return "\n".join(lines)
