"""``pyvmm boot --gdb`` with the real gdb (Debian's, in batch mode) against real guests:
the tiny kernel and the real-mode lab.

On a host whose KVM cannot deliver int3 or data breakpoints (PVM), the same commands go
through hardware breakpoints and stepped watchpoints: these tests hold on either host.
"""

import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from gdbtest import (
    GDB_TIMEOUT,
    gdb_command,
    needs_gdb,
    pyvmm_gdb,
    run_gdb,
    spinning_program,
)
from vmtest import GUEST, ROOT, assert_one_line_error, needs_kvm, run_pyvmm

pytestmark = [needs_kvm, needs_gdb]

KERNEL = GUEST / "build" / "kernel.elf"
LAB = GUEST / "build" / "realmode.elf"
LAB_BIN = "guest/build/realmode.bin"
_INSN = re.compile(r"^\s*([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t(\S+)\s*(.*)$")
_BRANCHES = ("j", "call", "ret", "iret", "loop")


def disassembly(elf, *flags):
    """objdump's view of ``elf``: address -> (length, mnemonic, operands)."""
    out = subprocess.run(
        ["objdump", "-d", "--insn-width=16", *flags, str(elf)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    table = {}
    for line in out.splitlines():
        m = _INSN.match(line)
        if m:
            table[int(m.group(1), 16)] = (len(m.group(2).split()), m.group(3), m.group(4))
    return table


def symbol(elf, name):
    out = subprocess.run(["nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return next(int(a, 16) for a, _, n in (row.split() for row in out.splitlines()) if n == name)


def source_line(path, text):
    lines = (GUEST / path).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def pcs(output):
    return [int(x, 16) for x in re.findall(r"^pc=(0x[0-9a-f]+)$", output, re.M)]


def assert_steps_follow_instruction_lengths(steps, table):
    assert len(steps) == 11
    for before, after in zip(steps, steps[1:], strict=False):
        length, mnemonic, operands = table[before]
        if mnemonic.startswith(_BRANCHES):
            target = re.match(r"([0-9a-f]+) <", operands)
            allowed = {before + length} | ({int(target.group(1), 16)} if target else set())
            assert after in allowed or mnemonic.startswith(("ret", "iret")), (
                hex(before),
                mnemonic,
                hex(after),
            )
        else:
            assert after == before + length, (hex(before), mnemonic, hex(after))


def traced_out(trace, address):
    """(port, byte) of the first OUT exit that --trace reports at ``address``."""
    for m in re.finditer(r"IO\s+out port (0x[0-9a-f]+) size 1 data ([0-9a-f]{2})\s.*", trace):
        if re.search(rf"\b{address:#x}:", m.group(0)):
            return int(m.group(1), 16), int(m.group(2), 16)
    raise AssertionError(f"no OUT at {address:#x} in the trace:\n{trace[:2000]}")


# --- the tiny kernel --------------------------------------------------------------------


def test_break_kmain_stops_at_its_first_source_line(guest_build):
    with pyvmm_gdb() as vm:
        out = run_gdb(KERNEL, vm.port, "break kmain", "continue", "info line *$pc", "detach")
        status, stdout, _ = vm.finish()
    line = source_line("kernel/main.c", "uart_init();")
    assert "Breakpoint 1, kmain (bi=" in out
    assert re.search(rf'Line {line} of "kernel/main.c" starts at address 0x[0-9a-f]+ <kmain>', out)
    assert status == 0 and stdout.startswith("pyvmm tiny kernel")


def test_stepi_moves_rip_by_the_decoded_instruction_lengths(guest_build):
    """From cpu_init, whose first instructions do no port I/O: under PVM a step over an
    OUT in ring 0 stops one instruction late (measured: `out` at uart_init+11, then the
    next stop past the `mov` after it), on hardware KVM where it should."""
    steps = ['printf "pc=%#lx\\n", $pc']
    steps += ["stepi", 'printf "pc=%#lx\\n", $pc'] * 10
    with pyvmm_gdb() as vm:
        out = run_gdb(KERNEL, vm.port, "break cpu_init", "continue", *steps, "kill")
    assert_steps_follow_instruction_lengths(pcs(out), disassembly(KERNEL))


def test_x_4i_shows_the_instructions_at_pc(guest_build):
    with pyvmm_gdb() as vm:
        out = run_gdb(KERNEL, vm.port, "break uart_putc", "continue", "x/4i $pc", "kill")
    table = disassembly(KERNEL)
    at = symbol(KERNEL, "uart_putc")
    shown = re.findall(r"^(?:=>)?\s+0x([0-9a-f]+) <uart_putc\+?\d*>:\t(\S+)", out, re.M)
    assert len(shown) == 4, out
    for address, mnemonic in shown:
        assert int(address, 16) in table and table[int(address, 16)][1] == mnemonic
    assert int(shown[0][0], 16) == at


def test_info_registers_matches_trace_for_the_same_exit(guest_build):
    """Stop on the UART's OUT, step over it: --trace reports that exit with the same RIP,
    port (DX) and byte (AL) that gdb shows."""
    table = disassembly(KERNEL)
    start = symbol(KERNEL, "uart_putc")
    out_insn = next(a for a in sorted(table) if a >= start and table[a][1] == "out")
    with pyvmm_gdb("--trace") as vm:
        out = run_gdb(
            KERNEL, vm.port, f"break *{out_insn:#x}", "continue",
            "info registers rip rdx rax", "delete", "stepi", "detach",
        )  # fmt: skip
        status, _, err = vm.finish()
    regs = dict(re.findall(r"^(rip|rdx|rax)\s+(0x[0-9a-f]+)", out, re.M))
    assert int(regs["rip"], 16) == out_insn
    port, byte = traced_out(err, out_insn)
    assert port == int(regs["rdx"], 16) & 0xFFFF == 0x3F8
    assert byte == int(regs["rax"], 16) & 0xFF == ord("p")  # of "pyvmm tiny kernel"
    assert status == 0


def test_watchpoint_on_a_kernel_variable_fires_where_it_is_written(guest_build):
    with pyvmm_gdb() as vm:
        out = run_gdb(
            KERNEL, vm.port, "break kmain", "continue", "watch tss_rsp0", "continue",
            "print tss_rsp0 == (unsigned long)&cpus[0].kernel_stack + sizeof(cpus[0].kernel_stack)",
            "kill",
        )  # fmt: skip
    assert "watchpoint 2: tss_rsp0" in out
    assert re.search(r"Old value = 0\s+New value = \d+", out), out
    assert "cpu_init () at kernel/cpu.c" in out
    assert "$1 = 1" in out


def test_set_var_on_guest_memory_changes_what_the_kernel_prints(guest_build):
    with pyvmm_gdb() as vm:
        run_gdb(KERNEL, vm.port, "break kmain", "continue", "set var bi->mem_size = 32 << 20",
                "detach")  # fmt: skip
        status, stdout, _ = vm.finish()
    assert status == 0
    assert stdout.startswith("pyvmm tiny kernel: 32 MiB of memory")


def test_uart_lab_changes_a_character_before_it_is_written(guest_build):
    """docs/labs.md, "Step the tiny kernel's UART driver with gdb", step 3."""
    with pyvmm_gdb() as vm:
        out = run_gdb(KERNEL, vm.port, "break uart_write", "continue", "set var s[0] = 'C'",
                      "delete", "continue")  # fmt: skip
        status, stdout, _ = vm.finish()
    assert 'uart_write (s=0x800 "console=ttyS0", n=13)' in out
    assert "exited normally" in out
    assert status == 0 and 'command line "Console=ttyS0"' in stdout


def interrupted(elf, vm, *after):
    """gdb's ``continue`` interrupted as a user's Ctrl-C does it: SIGINT to gdb, which
    sends the stub a 0x03 byte."""
    gdb = subprocess.Popen(
        gdb_command(elf, vm.port, "continue", *after),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # connected and running by now
        gdb.send_signal(signal.SIGINT)
        return gdb.communicate(timeout=GDB_TIMEOUT)[0]
    finally:
        gdb.kill()
        gdb.wait()


def test_ctrl_c_in_gdb_stops_a_spinning_guest(guest_build, tmp_path):
    prog = spinning_program(tmp_path)
    with pyvmm_gdb("--program", str(prog)) as vm:
        out = interrupted(KERNEL, vm, 'printf "pc=%#lx\\n", $pc', "kill")
        status, _, _ = vm.finish()
    assert "Program received signal SIGINT" in out
    assert pcs(out) == [symbol(prog, "_start")]  # the spinning ring-3 loop
    assert status == 137


def test_detach_lets_the_guest_run_to_its_end_with_its_status(guest_build):
    with pyvmm_gdb("--cmdline", "-- 7") as vm:
        out = run_gdb(KERNEL, vm.port, "detach")
        status, stdout, _ = vm.finish()
    assert "Inferior 1 (Remote target) detached" in out
    assert status == 7
    assert "hello from ring 3" in stdout


# --- the real-mode lab ------------------------------------------------------------------

I8086 = "set architecture i8086"  # gdb prefers the ELF's i386 to the stub's i8086


def test_lab_starts_in_16_bit_code_shown_as_such(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        out = run_gdb(LAB, vm.port, I8086, "x/4i $pc", "info registers eip cs", "kill")
    assert "_start () at labs/realmode/realmode.S:" in out
    assert re.search(r"=> 0x7c00 <_start>:\tcli", out)
    assert re.search(r"0x7c01 <_start\+1>:\txor\s+%ax,%ax", out)  # 16-bit operands
    assert re.search(r"^eip\s+0x7c00", out, re.M) and re.search(r"^cs\s+0x0", out, re.M)


def test_lab_break_on_a_label_stops_at_its_source_line(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        out = run_gdb(LAB, vm.port, "break protected_mode", "continue", "info registers cs",
                      "detach")  # fmt: skip
        status, stdout, _ = vm.finish()
    line = source_line("labs/realmode/realmode.S", "protected_mode:") + 1
    assert f"protected_mode () at labs/realmode/realmode.S:{line}" in out
    assert re.search(r"^cs\s+0x8\b", out, re.M)  # the 32-bit code segment
    assert status == 0 and stdout.count("realmode lab:") == 3


def test_lab_stepi_moves_ip_by_16_bit_instruction_lengths(guest_build):
    steps = ['printf "pc=%#x\\n", $pc'] + ["stepi", 'printf "pc=%#x\\n", $pc'] * 10
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        out = run_gdb(LAB, vm.port, I8086, *steps, "kill")
    table = disassembly(LAB, "-M", "i8086")
    assert_steps_follow_instruction_lengths(pcs(out), table)


def test_lab_info_registers_matches_trace_for_the_same_exit(guest_build):
    table = disassembly(LAB, "-M", "i8086")
    first_out = next(a for a in sorted(table) if table[a][1] == "out")
    with pyvmm_gdb("--kernel", LAB_BIN, "--trace") as vm:
        out = run_gdb(LAB, vm.port, f"break *{first_out:#x}", "continue",
                      "info registers eip edx eax", "delete", "stepi", "detach")  # fmt: skip
        status, _, err = vm.finish()
    regs = dict(re.findall(r"^(eip|edx|eax)\s+(0x[0-9a-f]+)", out, re.M))
    traced = re.search(
        r"IO\s+out port (0x[0-9a-f]+) size 1 data ([0-9a-f]{2}).*?(0x[0-9a-f]+):", err
    )
    assert traced, err
    assert int(regs["eip"], 16) == first_out == int(traced.group(3), 16)
    assert int(regs["edx"], 16) & 0xFFFF == int(traced.group(1), 16) == 0x3F8
    assert int(regs["eax"], 16) & 0xFF == int(traced.group(2), 16) == ord("r")
    assert status == 0


def test_lab_watchpoint_fires_when_the_page_tables_are_written(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        out = run_gdb(LAB, vm.port, "watch *(unsigned int *)0x1000", "continue", "kill")
    assert re.search(r"Old value = 0\s+New value = 8195", out), out  # 0x2003: PDPT | P | W
    assert "protected_mode () at labs/realmode/realmode.S" in out


def test_lab_set_var_changes_what_it_prints(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        run_gdb(LAB, vm.port, "set var *(char *)&msg16 = 'R'", "detach")
        status, stdout, _ = vm.finish()
    assert status == 0
    assert stdout.splitlines()[0] == "Realmode lab: 16-bit real mode"


def test_lab_ctrl_c_stops_spinning_16_bit_code(tmp_path):
    src = tmp_path / "spin16.S"
    src.write_text(".code16\n.globl _start\n_start: jmp _start\n")
    elf, flat = tmp_path / "spin16.elf", tmp_path / "spin16.bin"
    subprocess.run(["gcc", "-c", "-m32", "-o", tmp_path / "spin16.o", src], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x7c00", "-e", "_start", "-o", elf,
                    tmp_path / "spin16.o"], check=True)  # fmt: skip
    subprocess.run(["objcopy", "-O", "binary", elf, flat], check=True)
    with pyvmm_gdb("--kernel", str(flat)) as vm:
        out = interrupted(elf, vm, I8086, "x/i $pc", "kill")
        status, _, _ = vm.finish()
    assert "Program received signal SIGINT" in out
    assert re.search(r"=> 0x7c00 <_start>:\tjmp\s+0x7c00", out)
    assert status == 137


def test_lab_in_long_mode_after_connecting_again_shows_64_bit_registers(guest_build):
    """docs/labs.md's recipe (VM 5) as written: i8086, then i386 after the switch to
    protected mode, then connect again with the architecture back on auto."""
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        out = run_gdb(
            LAB, vm.port, I8086, "break protected_mode", "continue", "set architecture i386",
            "break long_mode", "continue", "disconnect", "set architecture auto", "file",
            f"target remote 127.0.0.1:{vm.port}", f"add-symbol-file {LAB}",
            "info registers rip", "x/i $pc", "detach",
        )  # fmt: skip
        status, stdout, _ = vm.finish()
    assert re.search(r"^rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <long_mode>", out, re.M), out
    assert re.search(r"=> 0x[0-9a-f]+ <long_mode>:\tlea\s+0x[0-9a-f]+\(%rip\),%rsi", out)
    assert status == 0 and stdout.count("realmode lab:") == 3


def test_lab_detach_lets_it_run_to_its_end(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        run_gdb(LAB, vm.port, "stepi", "detach")
        status, stdout, _ = vm.finish()
    assert status == 0
    assert stdout.splitlines()[-1] == "realmode lab: 64-bit long mode"


@pytest.mark.parametrize("elf", [KERNEL, LAB], ids=["kernel", "lab"])
def test_kill_in_gdb_ends_pyvmm_with_the_status_of_a_killed_process(guest_build, elf):
    args = () if elf == KERNEL else ("--kernel", LAB_BIN)
    with pyvmm_gdb(*args) as vm:
        run_gdb(elf, vm.port, "kill")
        status, _, _ = vm.finish()
    assert status == 137


# --- bad --gdb addresses ---------------------------------------------------------------


def test_port_in_use_is_one_line_and_status_2(guest_build):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_pyvmm("boot", "--gdb", f"127.0.0.1:{port}", timeout=GDB_TIMEOUT)
    assert_one_line_error(proc, f"--gdb 127.0.0.1:{port}", "cannot listen")


@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1:99999", "port must be a number"),
        ("localhost:http", "port must be a number"),
        ("no-such-host.invalid:1234", "--gdb no-such-host.invalid:1234"),
        ("0.0.0.0:0", "--gdb-allow-remote"),
    ],
)
def test_bad_gdb_address_is_one_line_and_status_2(guest_build, address, message):
    proc = run_pyvmm("boot", "--gdb", address, timeout=GDB_TIMEOUT)
    assert_one_line_error(proc, message)


def test_remote_address_is_allowed_with_a_warning(guest_build):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmm", "boot", "--gdb", "0.0.0.0:0", "--gdb-allow-remote"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        warning = proc.stderr.readline()
        waiting = proc.stderr.readline()
    finally:
        proc.kill()
        proc.communicate()
    assert warning.startswith("pyvmm: warning: gdb stub listening on 0.0.0.0")
    assert waiting.startswith("pyvmm: waiting for gdb on 0.0.0.0:")


@pytest.mark.slow
def test_linux_vmlinux_stops_at_start_kernel_by_its_symbol(linux_build):
    """gdb on the Linux guest's own vmlinux: its symbols name where the guest stopped
    (the kernel is built without KASLR, so the link addresses are the run addresses)."""
    build, initramfs = linux_build
    with pyvmm_gdb("--kernel", str(build.vmlinux), "--initrd", str(initramfs),
                   "--memory", "256M") as vm:  # fmt: skip
        out = run_gdb(build.vmlinux, vm.port, "break start_kernel", "continue", "bt 2", "kill")
        vm.finish()
    assert "Breakpoint 1, " in out and "in start_kernel ()" in out
    assert "secondary_startup_64" in out


def test_vcpus_are_threads_in_gdb(guest_build):
    """--cpus 2: gdb lists a thread per vCPU; a breakpoint the second CPU hits stops the
    machine there (all-stop: the boot CPU is stopped too), and `thread 1` shows the boot
    CPU where it waits for the other to report in."""
    with pyvmm_gdb("--cpus", "2") as vm:
        out = run_gdb(
            KERNEL, vm.port, "info threads", "break ap_main", "continue", "info threads",
            'printf "ap pc=%#lx\\n", $pc', "thread 1", 'printf "bsp pc=%#lx\\n", $pc', "kill",
        )  # fmt: skip
    assert re.search(r"^\* 1\s+Thread 1 \(vCPU 0\)", out, re.M), out
    assert re.search(r"^  2\s+Thread 2 \(vCPU 1\)", out, re.M), out
    assert re.search(r"Thread 2 \"?.*hit Breakpoint 1, ap_main \(cpu=1\)", out), out
    assert re.search(r"^\* 2\s+Thread 2 \(vCPU 1\) ap_main", out, re.M), out
    assert int(re.search(r"^ap pc=(0x[0-9a-f]+)$", out, re.M).group(1), 16) == symbol(
        KERNEL, "ap_main"
    )
    # the boot CPU: still in the bring-up, sending the second SIPI (apic.c) or waiting in
    # smp.c for the other to report in, as the timing falls; stopped inside the rdtsc
    # inlined there, gdb names the inline frame (kernel.h) as #0, with the address first
    # ("0x... in rdtsc ()") when the stop is not at the start of a line
    assert re.search(
        r"\[Switching to thread 1 \(Thread 1\)\]\n"
        r"#0 +(.* at kernel/(smp|apic)\.c|(0x[0-9a-f]+ in )?rdtsc \(\) at kernel/kernel\.h):",
        out,
    ), out
