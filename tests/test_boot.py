"""Booting real guests on /dev/kvm through the ``pyvmm boot`` command."""

import contextlib
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from vmtest import ROOT, assert_one_line_error, needs_kvm, run_pyvmm

from vmm.boot import layout

pytestmark = needs_kvm


def build(tmp_path, name, source, *ldflags):
    src = tmp_path / f"{name}.S"
    src.write_text(source)
    out = tmp_path / name
    subprocess.run(
        [
            "gcc",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            *ldflags,
            "-o",
            str(out),
            str(src),
        ],
        check=True,
    )
    return out


def test_bundled_guest_prints_banner_and_ring3_demo_and_exits_0(guest_build):
    proc = run_pyvmm("boot")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == 'pyvmm tiny kernel: 64 MiB of memory, command line "console=ttyS0"'
    assert lines[1] == "hello from ring 3, through the write system call"


def test_memory_and_command_line_reach_the_guest(guest_build):
    proc = run_pyvmm("boot", "--memory", "128M", "--cmdline", "quiet -- 0 two")
    assert proc.returncode == 0, proc.stderr
    assert 'pyvmm tiny kernel: 128 MiB of memory, command line "quiet -- 0 two"' in proc.stdout
    assert "arg: 0\narg: two\n" in proc.stdout


def test_exit_status_of_boot_is_the_guest_programs(guest_build):
    proc = run_pyvmm("boot", "--cmdline", "-- 42")
    assert proc.returncode == 42, proc.stderr


def test_program_option_runs_another_static_executable(guest_build, tmp_path):
    prog = build(
        tmp_path,
        "seven",
        """
        .globl _start
        _start: mov $1, %eax; mov $1, %edi; lea msg(%rip), %rsi; mov $6, %edx; syscall
                mov $231, %eax; mov $7, %edi; syscall
        msg: .ascii "seven\\n"
    """,
    )
    proc = run_pyvmm("boot", "--program", str(prog))
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout.endswith("seven\n")


def test_program_that_faults_is_killed_like_sigsegv(guest_build, tmp_path):
    prog = build(tmp_path, "crash", ".globl _start\n_start: movq 0x10, %rax\n")
    proc = run_pyvmm("boot", "--program", str(prog))
    assert proc.returncode == 128 + 11
    assert "program killed: #PF page fault" in proc.stdout


def test_program_cannot_pass_kernel_memory_to_write(guest_build, tmp_path):
    # write(1, <the kernel at 1 MiB>, 16) must fail with -EFAULT (-14), not print kernel bytes.
    prog = build(
        tmp_path,
        "efault",
        """
        .globl _start
        _start: mov $1, %eax; mov $1, %edi; mov $0x100000, %esi; mov $16, %edx; syscall
                mov %eax, %edi; neg %edi; mov $231, %eax; syscall
    """,
    )
    proc = run_pyvmm("boot", "--program", str(prog))
    assert proc.returncode == 14, (proc.stdout, proc.stderr)


def test_realmode_lab_switches_to_protected_and_long_mode(guest_build):
    proc = run_pyvmm("boot", "--kernel", str(guest_build / "realmode.bin"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "realmode lab: 16-bit real mode",
        "realmode lab: 32-bit protected mode",
        "realmode lab: 64-bit long mode",
    ]


def test_trace_shows_each_out_disassembled(guest_build):
    proc = run_pyvmm("boot", "--trace")
    assert proc.returncode == 0
    outs = [line for line in proc.stderr.splitlines() if "IO   out port 0x03f8" in line]
    assert outs and all(line.rstrip().endswith("out dx, al") for line in outs)
    assert re.search(r"IO   out port 0x0501 size 1 data 00 .* ee\s+out dx, al", proc.stderr)
    assert re.search(r"IO   in  port 0x03fd size 1 .* ec\s+in al, dx", proc.stderr)
    # One traced exit per byte the guest sent, plus the UART setup and the power-off.
    assert len(outs) == len(proc.stdout.encode()) + 1  # +1: the DLL write (offset 0, DLAB)


def test_trace_disassembles_16_bit_code_in_real_mode(guest_build):
    proc = run_pyvmm("boot", "--trace", "--kernel", str(guest_build / "realmode.bin"))
    first = next(line for line in proc.stderr.splitlines() if "IO" in line)
    assert "0x7c" in first and "in al, dx" in first


def test_trace_shows_the_mode_and_ring_of_each_exit(guest_build):
    proc = run_pyvmm("boot", "--trace", "--kernel", str(guest_build / "realmode.bin"))
    modes = re.findall(r"^\[\s*\d+\] (\d+-bit ring \d)", proc.stderr, re.M)
    assert list(dict.fromkeys(modes)) == ["16-bit ring 0", "32-bit ring 0", "64-bit ring 0"]


def test_stats_counts_virtio_requests_and_notifies(guest_build, tmp_path):
    image = tmp_path / "in.img"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/mkimage.py"), str(image), "--size", "64K"],
        check=True,
        capture_output=True,
    )
    proc = run_pyvmm("boot", "--stats", "--disk", str(image))
    assert proc.returncode == 0, proc.stderr
    requests, notifies = map(
        int,
        re.search(
            r"^virtio disk 0: (\d+) requests, (\d+) queue notifies$", proc.stderr, re.M
        ).groups(),
    )
    # 64 KiB read in at most 64 KiB requests, plus the identify request; one notify each.
    assert requests >= 2 and notifies == requests


def test_stats_counts_exits_and_splits_time(guest_build):
    proc = run_pyvmm("boot", "--stats")
    assert proc.returncode == 0
    counts = dict(re.findall(r"^(IO out|IO in)\s+(\d+)$", proc.stderr, re.M))
    assert int(counts["IO out"]) > len(proc.stdout)
    assert re.search(r"time in guest [\d.]+ ms \(\d+%\), in the VMM [\d.]+ ms", proc.stderr)


def test_hlt_ends_the_run_with_a_report(tmp_path):
    (tmp_path / "hlt.bin").write_bytes(b"\x90\xf4")
    proc = run_pyvmm("boot", "--kernel", str(tmp_path / "hlt.bin"))
    assert proc.returncode == 125
    assert "guest halted" in proc.stderr
    assert re.search(r"instruction: 0x7c01: f4\s+hlt", proc.stderr)


def test_triple_fault_is_reported_with_registers_and_instruction(tmp_path):
    kernel = build(
        tmp_path,
        "tf.elf",
        """
        .globl _start
        _start: lidt idtr(%rip)
                ud2
        idtr: .word 0
              .quad 0
    """,
        "-Wl,-Ttext-segment=0x100000",
    )
    proc = run_pyvmm("boot", "--kernel", str(kernel))
    assert proc.returncode == 125
    assert "triple-faulted" in proc.stderr
    assert re.search(r"instruction: 0x10[01]007: 0f 0b\s+ud2", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_instruction_kvm_cannot_emulate_is_reported(tmp_path):
    # Under PVM, ring-0 code is emulated and CMPXCHG16B is not: KVM_EXIT_INTERNAL_ERROR.
    # On hardware KVM it simply runs, and the HLT after it ends the run instead.
    kernel = build(tmp_path, "ie.elf", """
        .globl _start
        _start: lea buf(%rip), %rdi
                xor %eax, %eax
                xor %edx, %edx
                cmpxchg16b (%rdi)
                hlt
        .balign 16
        buf: .quad 0, 0
    """, "-Wl,-Ttext-segment=0x100000")  # fmt: skip
    proc = run_pyvmm("boot", "--kernel", str(kernel))
    assert proc.returncode == 125
    if "KVM internal error" in proc.stderr:
        assert "instruction emulation failed" in proc.stderr
        assert re.search(r"instruction: 0x[0-9a-f]+: 48 0f c7 0f\s+cmpxchg16b", proc.stderr)
    else:
        assert "guest halted" in proc.stderr
    assert "rip " in proc.stderr and "Traceback" not in proc.stderr


# --- bad input: one line, exit status 2 ------------------------------------------------


def test_no_kvm_device():
    proc = run_pyvmm("boot", env={"PYVMM_KVM_DEVICE": "/nonexistent/kvm"})
    assert_one_line_error(proc, "/nonexistent/kvm does not exist")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a device node")
def test_no_permission_on_kvm_device(guest_build, tmp_path):
    # A KVM device node nobody may open, and root without the capability to override
    # file permissions: the same EACCES an ordinary user outside group 'kvm' gets.
    node = tmp_path / "kvm"
    st = os.stat("/dev/kvm")
    os.mknod(node, 0o600 | 0o020000, st.st_rdev)
    os.chmod(node, 0)
    proc = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-m",
            "vmm",
            "boot",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYVMM_KVM_DEVICE": str(node)},
        cwd=ROOT,
        timeout=60,
    )
    assert_one_line_error(proc, f"no permission to open {node}")


def test_missing_kernel(tmp_path):
    assert_one_line_error(run_pyvmm("boot", "--kernel", str(tmp_path / "none")), "does not exist")


def test_empty_kernel(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert_one_line_error(run_pyvmm("boot", "--kernel", str(tmp_path / "empty")), "is empty")


def test_truncated_kernel(tmp_path, guest_build):
    data = (guest_build / "kernel.elf").read_bytes()
    (tmp_path / "cut.elf").write_bytes(data[:3000])
    assert_one_line_error(run_pyvmm("boot", "--kernel", str(tmp_path / "cut.elf")), "truncated")


def test_kernel_of_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("not a kernel\n" * 100)
    assert_one_line_error(
        run_pyvmm("boot", "--kernel", str(tmp_path / "notes.txt")), "unknown format"
    )


def test_kernel_segment_that_does_not_fit_in_memory(guest_build):
    assert_one_line_error(run_pyvmm("boot", "--memory", "1M"), "does not fit in guest memory")


@pytest.mark.parametrize("value", ["lots", "64X", "0", "1000G", "1001", "-64M", "1T", ""])
def test_bad_memory_value(value):
    assert_one_line_error(run_pyvmm("boot", "--memory", value), "memory")


def host_can_map(size: int) -> bool:
    """Whether one anonymous mapping of ``size`` bytes could succeed here: always with
    vm.overcommit_memory=1, else not beyond RAM and swap (mode 0's limit; mode 2's is lower)."""
    with open("/proc/sys/vm/overcommit_memory") as f:
        if f.read().strip() == "1":
            return True
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return size <= sum(int(fields[k].split()[0]) << 10 for k in ("MemTotal", "SwapTotal"))


@pytest.mark.skipif(host_can_map(layout.MAX_MEMORY), reason="this host could map it all")
def test_memory_beyond_what_the_host_can_map(guest_build):
    proc = run_pyvmm("boot", "--memory", f"{layout.MAX_MEMORY >> 20}M")
    assert_one_line_error(proc, "the host cannot map 64512 MiB of guest memory", "RAM and swap")


@pytest.mark.parametrize("option", ["--kernel", "--program"])
@pytest.mark.parametrize("kind", ["a character device", "a FIFO", "a directory", "a socket"])
def test_kernel_or_program_that_is_not_a_regular_file(guest_build, tmp_path, option, kind, request):
    path = {"a character device": "/dev/zero", "a directory": str(tmp_path)}.get(kind)
    with contextlib.ExitStack() as stack:
        if kind == "a FIFO":
            path = str(tmp_path / "fifo")
            os.mkfifo(path)  # no writer ever comes: opening it must not wait for one
        elif kind == "a socket":
            path = str(request.getfixturevalue("socket_dir") / "sock")
            stack.enter_context(socket.socket(socket.AF_UNIX)).bind(path)
        proc = run_pyvmm("boot", option, path, timeout=60)
    assert_one_line_error(proc, f"{option[2:]} {path!r} is {kind}")


@pytest.mark.parametrize("option", ["--kernel", "--program"])
def test_kernel_or_program_larger_than_guest_memory(guest_build, tmp_path, option):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte that is never read
    proc = run_pyvmm("boot", "--memory", "64M", option, str(big))
    assert_one_line_error(proc, f"{option[2:]} {str(big)!r} is 1024 GiB; at most 64 MiB")


def test_program_without_the_elf_magic(guest_build, tmp_path):
    prog = tmp_path / "prog.sh"
    prog.write_text("#!/bin/sh\necho hi\n" * 20)
    proc = run_pyvmm("boot", "--program", str(prog))
    assert_one_line_error(proc, f"program {str(prog)!r} is not an ELF file")


def test_command_line_that_is_not_utf8(guest_build):
    # Raw bytes in argv, as a shell passes them: Python holds them as surrogates (PEP 383).
    proc = run_pyvmm("boot", "--cmdline", os.fsdecode(b"console=ttyS0 caf\xe9"))
    assert_one_line_error(proc, "--cmdline is not UTF-8 text: byte 0xe9 at character 17")


def ctrl_c_while_spinning(tmp_path, *boot_args: str) -> tuple[int, str]:
    """SIGINT to ``pyvmm boot`` once its program spins in ring 3: (status, stderr)."""
    prog = build(tmp_path, "spin", ".globl _start\n_start: jmp _start\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmm", "boot", *boot_args, "--program", str(prog)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("pyvmm tiny kernel")
        time.sleep(0.3)  # the program is spinning in ring 3 now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


def test_ctrl_c_stops_a_guest_that_never_powers_off(guest_build, tmp_path):
    assert ctrl_c_while_spinning(tmp_path) == (130, "pyvmm: interrupted\n")


def test_keys_typed_on_a_terminal_reach_the_guest_uart(tmp_path):
    # A real-mode guest that says ">" and a newline, then echoes what its UART receives
    # until it gets a 'q'.
    src = tmp_path / "echo.S"
    src.write_text("""
        .code16
        .globl _start
        _start: movw $0x3f8, %dx
                movb $'>', %al
                outb %al, %dx
                movb $'\\n', %al
                outb %al, %dx
        echo:   movw $0x3fd, %dx
        1:      inb %dx, %al
                testb $1, %al          /* LSR.DR: a byte has arrived */
                jz 1b
                movw $0x3f8, %dx
                inb %dx, %al           /* RBR */
                movb %al, %bl
                movw $0x3fd, %dx
        2:      inb %dx, %al
                testb $0x20, %al       /* LSR.THRE */
                jz 2b
                movw $0x3f8, %dx
                movb %bl, %al
                outb %al, %dx
                cmpb $'q', %bl
                jne echo
                movw $0x501, %dx
                xorb %al, %al
                outb %al, %dx
                hlt
    """)
    obj, binary = tmp_path / "echo.o", tmp_path / "echo.bin"
    subprocess.run(["gcc", "-c", "-o", str(obj), str(src)], check=True)
    subprocess.run(["ld", "-Ttext=0x7c00", "--oformat", "binary", "-o", str(binary), str(obj)],
                   check=True)  # fmt: skip
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmm", "boot", "--kernel", str(binary)],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    os.close(terminal)
    try:
        assert proc.stdout.readline() == b">\n"  # the guest is running, the terminal set
        os.write(controller, b"hi q")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        os.close(controller)
    assert proc.returncode == 0, err
    assert out == b"hi q"  # every byte, in order, though they came faster than one at a time
