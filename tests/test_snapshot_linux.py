"""The Linux guest's state held: snapshotted while /init waits for a console line,
restored in a new process and migrated live to another, each then given the line and
running the workload to the host's result line, without booting again.

Slow: the one boot to /init takes tens of seconds under PVM (minutes on a loaded host).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from guestproc import GuestProcess
from test_linux_boot import IMAGE_BYTES, host_line, mkimage
from test_snapshot import ctl_ok
from vmtest import needs_kvm, run_pyvmm

from vmm.guests import linux as linux_guest

pytestmark = [needs_kvm, pytest.mark.slow]
BOOT_TIMEOUT = 1200


def test_linux_snapshot_restore_and_migration_run_the_workload(tmp_path, linux_build):
    build, initramfs = linux_build
    image = tmp_path / "input.img"
    mkimage.make_image(image, IMAGE_BYTES, seed=11)
    expected = host_line(tmp_path, image)
    sock, snap = tmp_path / "api.sock", tmp_path / "snap"
    incoming = tmp_path / "in.sock"
    with GuestProcess(
        "--kernel", build.vmlinux, "--initrd", initramfs, "--memory", "256M",
        "--disk", str(image), "--cmdline", f"console=ttyS0 {linux_guest.WAIT_PARAM}",
        "--api-sock", str(sock), stdin=subprocess.DEVNULL,
    ) as source:  # fmt: skip
        source.wait_for(linux_guest.WAIT_LINE.encode(), timeout=BOOT_TIMEOUT)
        info = ctl_ok(sock, "snapshot", str(snap))
        manifest = (snap / "manifest.json").read_text()
        for part in ("pic_master", "pic_slave", "ioapic", "pit", "clock", "lapic"):
            assert f'"{part}"' in manifest, part
        assert int(info["memory_written"]) < 64 << 20  # touched pages only, of 256 MiB
        # Moved live to another process, which is then given the line.
        with GuestProcess("--incoming", f"unix:{incoming}", stdin=subprocess.PIPE) as dest:
            while not incoming.exists():
                assert dest.proc.poll() is None, dest.stderr()
                time.sleep(0.05)
            figures = ctl_ok(sock, "migrate", "--to", f"unix:{incoming}")
            assert source.wait() == 0
            assert int(figures["rounds"]) >= 2
            dest.proc.stdin.write(b"\n")
            dest.proc.stdin.flush()
            assert dest.wait(BOOT_TIMEOUT) == 0, dest.stderr()
            out = dest.output().decode(errors="replace").replace("\r\n", "\n")
    assert "Linux version" not in out  # it went on, it did not boot
    assert "init: running /workload /dev/vda\n" + expected in out
    # Restored from the snapshot, twice: the snapshot is not used up.
    for _ in range(2):
        vm = run_pyvmm("boot", "--restore", str(snap), input="\n", timeout=BOOT_TIMEOUT)
        assert vm.returncode == 0, (vm.stdout[-2000:], vm.stderr)
        assert "Linux version" not in vm.stdout
        assert "init: running /workload /dev/vda\n" + expected in vm.stdout
