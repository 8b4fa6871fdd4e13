"""More than one vCPU (``pyvmm boot --cpus N``): a thread each, stopped together however
the run ends, with real guests."""

import re
import subprocess
import sys

import pytest
from test_boot import build, ctrl_c_while_spinning
from vmtest import ROOT, assert_one_line_error, needs_kvm, run_pyvmm

pytestmark = needs_kvm

TRIPLE_FAULT = """
    .globl _start
    _start: lidt idtr(%rip)
            ud2
    idtr: .word 0
          .quad 0
"""


def test_the_tiny_kernel_starts_each_cpu_which_prints_its_own_apic_id(guest_build):
    """INIT-SIPI-SIPI from the boot CPU's local APIC, the real-mode trampoline, long
    mode with a GDT, TSS and stack per CPU (guest/kernel/smp.c, smp.S): each CPU reads
    its id from its own local APIC, which only a CPU that runs can do."""
    proc = run_pyvmm("boot", "--cpus", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "cpu 0: APIC id 0, the boot CPU, starting 2 more",
        "cpu 1: APIC id 1",
        "cpu 2: APIC id 2",
        "3 CPUs up",
        "hello from ring 3, through the write system call",
    ]


def test_a_triple_fault_on_the_boot_cpu_stops_the_others(tmp_path):
    """The application processors wait in KVM for a SIPI that never comes; the boot
    CPU's failure must still end the run, with its report."""
    kernel = build(tmp_path, "tf.elf", TRIPLE_FAULT, "-Wl,-Ttext-segment=0x100000")
    proc = run_pyvmm("boot", "--cpus", "4", "--kernel", str(kernel), timeout=30)
    assert proc.returncode == 125, proc.stderr
    assert "triple-faulted" in proc.stderr and "ud2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_stops_every_vcpu(guest_build, tmp_path):
    assert ctrl_c_while_spinning(tmp_path, "--cpus", "2") == (130, "pyvmm: interrupted\n")


@pytest.mark.parametrize(
    "value, said", [("0", "out of range"), ("17", "out of range"), ("two", "not a number")]
)
def test_bad_cpu_count(value, said):
    assert_one_line_error(run_pyvmm("boot", "--cpus", value), "--cpus", said)


GIL_CHECK = """
import sys, threading, time
from vmm.guests import tiny as guest
from vmm.vm.machine import Machine, MachineConfig

exits = []
machine = Machine(MachineConfig(guest.KERNEL, program=sys.argv[1], output=lambda b: None))
machine.after_run.append(lambda vcpu, exit: exits.append(exit))
threading.Thread(target=machine.run, daemon=True).start()
while len(exits) < 2:  # the banner is on its way; ring 3 comes next
    time.sleep(0.05)
time.sleep(0.5)
before = len(exits)
total = sum(i * i for i in range(2_000_000))  # Python work, needing the GIL throughout
print("exits during the work:", len(exits) - before, flush=True)
import os; os._exit(0)  # the vCPU thread is still in the guest
"""


def test_kvm_run_releases_the_gil(guest_build, tmp_path):
    """A vCPU thread in KVM_RUN, its guest spinning in ring 3 without a single exit, and
    the main thread still runs Python: cffi released the GIL around the call. (If it had
    not, the main thread would wait for the guest's next exit: forever.)"""
    spin = build(tmp_path, "spin", ".globl _start\n_start: jmp _start\n")
    proc = subprocess.run(
        [sys.executable, "-c", GIL_CHECK, str(spin)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "exits during the work: 0\n"


def test_bench_vcpus_reports_cpu_time_for_each_count(guest_build):
    """A measurement, so only its shape is checked: a row per vCPU count, each run of the
    spinning guest finished (the bench raises otherwise), CPU time and wall time > 0."""
    proc = run_pyvmm("bench", "vcpus", "--runs", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["vCPUs", "wall", "(s)", "CPU", "(s)", "host", "CPUs", "busy"]
    counts = [int(line.split()[0]) for line in lines[1:-1]]
    assert counts[:2] == [1, 2]
    assert all(float(line.split()[2]) > 0 for line in lines[1:-1])


def test_stats_has_a_column_per_vcpu_and_the_total(guest_build):
    proc = run_pyvmm("boot", "--cpus", "2", "--stats")
    assert proc.returncode == 0, proc.stderr
    table = proc.stderr.splitlines()
    assert table[0].split() == ["exit", "vcpu0", "vcpu1", "total"]
    rows = {line.split()[0] + line.split()[1]: line.split()[-3:] for line in table[1:5]}
    # cpu 1 printed its line itself: 17 bytes written by vCPU 1, its own exits
    out0, out1, total = (int(n) for n in rows["IOout"])
    assert out1 == len("cpu 1: APIC id 1\n") and out0 + out1 == total
    totals = next(line for line in table if line.startswith("total")).split()[1:]
    vcpu0, vcpu1, both = (int(n) for n in totals)
    assert vcpu0 + vcpu1 == both
    assert any(line.startswith("vcpu1: time in guest") for line in table)


def test_trace_names_the_vcpu_of_each_exit(guest_build):
    proc = run_pyvmm("boot", "--cpus", "2", "--trace")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    ap = [line for line in lines if line.split()[2] == "vcpu1"]
    written = bytes.fromhex("".join(line.split("data ")[1].split()[0] for line in ap
                                    if "out port 0x03f8" in line))  # fmt: skip
    assert written == b"cpu 1: APIC id 1\n"
    # its first: KVM_RUN returning as the INIT (reset vector) or the SIPI (the trampoline)
    # reached the waiting vCPU, in real mode
    assert "16-bit ring 0 INTERRUPTED" in ap[0]
    assert re.search(r"INTERRUPTED +(0xfffffff0|0x70000): ", ap[0]), ap[0]
    numbers = [int(line[1:].split("]")[0]) for line in lines]
    assert sorted(numbers) == list(range(1, len(lines) + 1))


def test_a_reset_stops_every_vcpu(tmp_path):
    """The i8042's reset line (0xfe to port 0x64), pulled by the boot CPU in real mode
    while the others wait for a SIPI: the run ends as a reset does, status 0."""
    (tmp_path / "reset.bin").write_bytes(b"\xb0\xfe\xe6\x64\xf4")  # mov al,0xfe; out 0x64,al
    proc = run_pyvmm("boot", "--cpus", "3", "--kernel", str(tmp_path / "reset.bin"), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
