"""Booting the Linux guest built for pyvmm (guest/linux, scripts/build_linux.py) through
``pyvmm boot``: PVH and bzImage, the workload on /dev/vda, the exit status, and the
unpatched kernel's end under PVM.

Slow: under PVM every ring-0 instruction is emulated, and Linux reaches /init after
some 15-25 s here (docs/linux.md). The image is small so that the workload's reads,
copied by emulated ring-0 code, cost little on top.
"""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_workload_host import mkimage
from vmtest import ROOT, needs_kvm, run_pyvmm

from vmm.kvm.kind import kvm_kind

pytestmark = [needs_kvm, pytest.mark.slow]
WORKLOAD = ROOT / "guest" / "workload" / "workload"
IMAGE_BYTES = 256 * 1024 + 100
PVM = kvm_kind()["kind"] == "pvm"
TIMEOUT = 300


@pytest.fixture
def image(tmp_path, guest_build):
    path = tmp_path / "input.img"
    digest = mkimage.make_image(path, IMAGE_BYTES, seed=11)
    return path, digest


def host_line(tmp_path, image) -> str:
    copy = tmp_path / "host.img"
    shutil.copy(image, copy)
    host = subprocess.run([str(WORKLOAD), str(copy)], capture_output=True, text=True)
    assert host.returncode == 0, host.stdout
    return host.stdout


def result_block(path):
    with open(path, "rb") as f:
        f.seek(mkimage.result_offset(IMAGE_BYTES))
        return f.read(512)


@pytest.mark.parametrize("kernel", ["vmlinux", "bzImage"])
def test_linux_runs_the_workload_on_vda_and_prints_the_hosts_line(
    tmp_path, image, linux_build, kernel
):
    build, initramfs = linux_build
    path, digest = image
    expected = host_line(tmp_path, path)
    assert expected == f"workload: bytes={IMAGE_BYTES} sha256={digest}\n"
    profile = ["--profile"] if kernel == "vmlinux" else []
    vm = run_pyvmm(
        "boot", "--kernel", f"{build.dir}/{kernel}", "--initrd", initramfs,
        "--memory", "256M", "--disk", str(path), "--stats", *profile, timeout=TIMEOUT,
    )  # fmt: skip
    assert vm.returncode == 0, (vm.stdout[-3000:], vm.stderr)
    assert "Linux version 6.1" in vm.stdout
    assert "Booting paravirtualized kernel on KVM" in vm.stdout  # CPUID's KVM leaves
    assert "Run /init as init process" in vm.stdout
    assert "init: running /workload /dev/vda\n" + expected in vm.stdout
    assert "virtio_mmio.device=512@0xd0000000:5" in vm.stderr  # the command line, shown
    assert ("clearcpuid=308,151,297,580" in vm.stderr) == PVM
    assert result_block(path).rstrip(b"\0") == expected.encode()
    if profile:  # samples named from the System.map beside the vmlinux
        report = vm.stderr[vm.stderr.index("profile: ") :].splitlines()[1:]
        places = {line.split(maxsplit=2)[2] for line in report if "%" in line}
        with open(build.system_map) as f:
            symbols = {line.split()[2] for line in f}
        assert places & symbols, report


def bzimage_with_setup_sects_zero(bzimage, tmp_path):
    """The same kernel with four setup sectors and a setup_sects of 0, which boot.rst
    says means 4: the 64-bit entry needs only the header, in the first two sectors."""
    data = bzimage.read_bytes()
    setup = (data[0x1F1] + 1) * 512
    old = bytearray(data[: 5 * 512]) + data[setup:]
    old[0x1F1] = 0
    path = tmp_path / "bzImage-setup-sects-0"
    path.write_bytes(old)
    return path


@pytest.mark.parametrize("kernel", ["vmlinux", "bzImage with setup_sects 0"])
def test_guest_program_status_leaves_through_the_exit_port(linux_build, kernel, tmp_path):
    """No disk: /init says so and hands status 1 to the exit helper, which pyvmm exits
    with."""
    build, initramfs = linux_build
    if kernel == "vmlinux":
        path = build.vmlinux
    else:
        path = bzimage_with_setup_sects_zero(Path(build.bzimage), tmp_path)
    vm = run_pyvmm(
        "boot", "--kernel", path, "--initrd", initramfs, "--memory", "256M",
        timeout=TIMEOUT,
    )  # fmt: skip
    assert vm.returncode == 1, (vm.stdout[-3000:], vm.stderr)
    assert vm.stdout.endswith("init: no /dev/vda\n")


def test_unpatched_kernel_is_bootable_and_under_pvm_dies_on_int3(linux_build):
    """The loaders do not depend on the patches: without them the same kernel boots on
    hardware KVM to /init; under PVM it gets as far as the INT3 self-test and no further
    (KVM reports the instruction it could not emulate)."""
    build, initramfs = linux_build
    vm = run_pyvmm(
        "boot", "--kernel", build.vmlinux_unpatched, "--initrd", initramfs,
        "--memory", "256M", timeout=TIMEOUT,
    )  # fmt: skip
    assert "Linux version 6.1" in vm.stdout
    if PVM:
        assert vm.returncode == 125, vm.stderr
        assert "instruction emulation failed" in vm.stderr
        assert "int3" in vm.stderr
    else:
        assert vm.returncode == 1 and vm.stdout.endswith("init: no /dev/vda\n"), vm.stderr


@pytest.mark.parametrize(
    "command, said",
    [("reboot", "reboot: Restarting system"), ("poweroff", "reboot: System halted")],
)
def test_reboot_and_poweroff_end_pyvmm_cleanly(linux_build, command, said):
    """busybox as init, told by the kernel command line (words after "--" are init's) to
    reboot (the i8042 reset line) or power off (a halt with interrupts off, without ACPI)."""
    build, initramfs = linux_build
    vm = run_pyvmm(
        "boot", "--kernel", build.vmlinux, "--initrd", initramfs, "--memory", "256M",
        "--cmdline", f"console=ttyS0 rdinit=/bin/busybox -- {command} -f", timeout=TIMEOUT,
    )  # fmt: skip
    assert vm.returncode == 0, (vm.stdout[-2000:], vm.stderr)
    assert said in vm.stdout


def test_init_waits_for_the_line_runs_the_copies_and_carries_their_status(tmp_path, linux_build):
    """With pyvmm.wait and pyvmm.copies=2 the exit helper, exec'd by /init, says it
    waits and runs nothing until the console line comes (given once the guest says so:
    Linux's 8250 driver drops what arrived before the console was opened), then says
    what it runs, starts two copies at once and ends the VM with their status: 2, from a
    truncated image (the workload's "short read")."""
    from guestproc import GuestProcess

    from vmm.guests.linux import COPIES_PARAM, WAIT_LINE, WAIT_PARAM

    build, initramfs = linux_build
    path = tmp_path / "short.img"
    mkimage.make_image(path, 64 * 1024, seed=3)
    with open(path, "r+b") as f:
        f.truncate(8 * 1024)
    with GuestProcess(
        "--kernel", build.vmlinux, "--initrd", initramfs, "--memory", "256M",
        "--disk", str(path), "--cmdline", f"console=ttyS0 {WAIT_PARAM} {COPIES_PARAM}=2",
        stdin=subprocess.PIPE,
    ) as vm:  # fmt: skip
        vm.wait_for(WAIT_LINE.encode(), timeout=TIMEOUT)
        time.sleep(0.5)
        assert b"init: running" not in vm.output()
        vm.proc.stdin.write(b"\n")
        vm.proc.stdin.flush()
        assert vm.wait(TIMEOUT) == 2, vm.output()[-3000:]
        out = vm.output().decode(errors="replace").replace("\r\n", "\n")
    after = out[out.index(WAIT_LINE + "\n") :]
    assert "init: running /workload /dev/vda\n" in after, after
    assert after.count("short read: the data length runs past the end of the file") == 2, after


def test_linux_brings_up_every_cpu_and_runs_a_copy_of_the_workload_on_each(
    tmp_path, image, linux_smp_build
):
    """--cpus 2 with the SMP kernel: Linux finds both CPUs in the MP table, starts the
    second with INIT/SIPI through the in-kernel local APICs, and /init's nproc says 2;
    with pyvmm.copies=2 it runs two workloads at once on /dev/vda, and both print the
    host's line (`pyvmm bench parallel`'s VM row). Slow: under PVM each CPU emulates its
    own ring 0 (QEMU took 42 s here with two CPUs against 27 s with one)."""
    from vmm.guests.linux import COPIES_PARAM

    build, initramfs = linux_smp_build
    path, _ = image
    expected = host_line(tmp_path, path)
    vm = run_pyvmm(
        "boot", "--kernel", build.vmlinux, "--initrd", initramfs, "--memory", "256M",
        "--cpus", "2", "--disk", str(path), "--cmdline", f"console=ttyS0 {COPIES_PARAM}=2",
        timeout=2 * TIMEOUT,
    )  # fmt: skip
    assert vm.returncode == 0, (vm.stdout[-3000:], vm.stderr)
    assert "smp: Brought up 1 node, 2 CPUs" in vm.stdout
    assert "init: nproc=2\n" in vm.stdout
    after = vm.stdout[vm.stdout.index("init: running /workload /dev/vda\n") :]
    assert after.count(expected) == 2, after
