"""``pyvmm boot --interrupts``: the tiny kernel takes interrupts from the local APIC
timer, the UART and virtio-blk (through the in-kernel IOAPIC, the disk's over an irqfd)
and sleeps in HLT instead of polling; ``--trace`` shows each interrupt the VMM raises."""

import re

from test_workload_host import mkimage
from vmtest import ROOT, needs_kvm, run_pyvmm

pytestmark = needs_kvm
COUNTS = re.compile(r"interrupts: timer (\d+), uart (\d+) \((\d+) bytes received\), virtio (\d+)")
SPIN = ROOT / "guest" / "build" / "spin"


def counts(stdout: str) -> tuple[int, ...]:
    match = COUNTS.search(stdout)
    assert match, stdout
    return tuple(int(n) for n in match.groups())


def test_each_device_interrupt_reaches_its_handler(guest_build, tmp_path):
    """With --ioeventfd the disk's request completes on the I/O thread, after the guest
    has gone to sleep: each one then ends with a used-buffer interrupt."""
    image = tmp_path / "in.img"
    digest = mkimage.make_image(image, 16384)
    proc = run_pyvmm("boot", "--interrupts", "--ioeventfd", "--disk", str(image))
    assert proc.returncode == 0, proc.stderr
    assert f"workload: bytes=16384 sha256={digest}\n" in proc.stdout
    _timer, uart, received, virtio = counts(proc.stdout)
    # One interrupt per byte printed after the banner (printed before they were on).
    after_banner = proc.stdout.split("\n", 1)[1]
    assert uart >= len(after_banner[: after_banner.index("interrupts:")]) and received == 0
    assert virtio >= 3  # the workload's reads, its result's write, the flush


def test_the_local_apic_timer_ticks_while_ring_3_runs(guest_build):
    proc = run_pyvmm("boot", "--interrupts", "--program", str(SPIN), "--cmdline", "-- 200")
    assert proc.returncode == 0, proc.stderr
    timer, *_ = counts(proc.stdout)
    assert timer > 0


def test_trace_shows_each_injection_and_the_uart_is_not_polled(guest_build, tmp_path):
    image = tmp_path / "in.img"
    mkimage.make_image(image, 4096)
    proc = run_pyvmm("boot", "--interrupts", "--trace", "--disk", str(image))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    uart = [i for i, line in enumerate(lines) if "IRQ  KVM_IRQ_LINE gsi 4 " in line]
    disk = [i for i, line in enumerate(lines) if "IRQ  irqfd gsi 16 " in line]
    assert uart and disk
    assert all(lines[i].endswith("-> vector 0x34 to cpu 0") for i in uart)  # pin 4
    assert all(lines[i].endswith("-> vector 0x40 to cpu 0") for i in disk)  # pin 16
    # Between the exits: after a THR write, before the handler's IIR read.
    assert "out port 0x03f8" in lines[uart[1] - 1] and "in  port 0x03fa" in lines[uart[1] + 1]
    assert "MMIO write 0xd0000050" in lines[disk[0] - 1]  # the queue notify
    # Once interrupts are on, the driver waits in HLT, never reading LSR (0x3fd).
    assert not any("port 0x03fd" in line for line in lines[uart[0] :])
