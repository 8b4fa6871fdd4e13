"""The workload on a virtio-blk disk in the tiny VM: the same line and the same result
block as the very same binary run on the host."""

import hashlib
import os
import shutil
import subprocess

import pytest
from test_workload_host import mkimage
from vmtest import ROOT, assert_one_line_error, immutable, needs_kvm, run_pyvmm

pytestmark = needs_kvm
WORKLOAD = ROOT / "guest" / "workload" / "workload"


@pytest.fixture
def image(tmp_path, guest_build):
    path = tmp_path / "input.img"
    digest = mkimage.make_image(path, 3 * 1024 * 1024 + 100, seed=7)
    return path, digest


def result_block(path, n):
    with open(path, "rb") as f:
        f.seek(mkimage.result_offset(n))
        return f.read(512)


@pytest.mark.parametrize("ioeventfd", [False, True], ids=["exit-loop", "ioeventfd"])
def test_vm_and_host_print_the_same_line_and_leave_the_same_block(tmp_path, image, ioeventfd):
    path, digest = image
    n = 3 * 1024 * 1024 + 100
    host_copy = tmp_path / "host.img"
    shutil.copy(path, host_copy)
    host = subprocess.run([str(WORKLOAD), str(host_copy)], capture_output=True, text=True)
    assert host.returncode == 0, host.stdout
    expected = f"workload: bytes={n} sha256={digest}\n"
    assert host.stdout == expected

    args = ["boot", "--disk", str(path)] + (["--ioeventfd"] if ioeventfd else [])
    vm = run_pyvmm(*args)
    assert vm.returncode == 0, (vm.stdout, vm.stderr)
    assert vm.stdout.endswith(expected)
    assert "virtio-blk: vda" in vm.stdout
    block = result_block(path, n)
    assert block == result_block(host_copy, n)
    assert block.rstrip(b"\0") == expected.encode()


def test_image_without_magic_fails_the_same_way_in_the_vm(tmp_path, guest_build):
    path = tmp_path / "plain.img"
    path.write_bytes(b"\xab" * 4096)
    host = subprocess.run([str(WORKLOAD), str(path)], capture_output=True, text=True)
    vm = run_pyvmm("boot", "--disk", str(path))
    assert host.returncode == vm.returncode == 1
    message = "not a workload image (no PYVMMWL1 header)\n"
    assert host.stdout.endswith(message) and vm.stdout.endswith(message)
    assert path.read_bytes() == b"\xab" * 4096


def test_read_only_disk_refuses_the_result_write_and_stays_unchanged(image):
    path, _ = image
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    vm = run_pyvmm("boot", "--disk", f"{path},ro")
    assert vm.returncode == 2, vm.stdout
    assert "virtio-blk: vda" in vm.stdout and "read-only" in vm.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_second_disk_is_dev_vdb(tmp_path, image):
    path, digest = image
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(8192))
    vm = run_pyvmm("boot", "--disk", str(blank), "--disk", str(path), "--cmdline", "-- /dev/vdb")
    assert vm.returncode == 0, vm.stdout
    assert f"sha256={digest}" in vm.stdout
    assert blank.read_bytes() == bytes(8192)


def test_program_cannot_open_a_disk_that_does_not_exist(image):
    path, _ = image
    vm = run_pyvmm("boot", "--disk", str(path), "--cmdline", "-- /dev/vdc")
    assert vm.returncode == 2
    assert "/dev/vdc" in vm.stdout


def test_missing_disk_image_is_a_one_line_error(tmp_path):
    assert_one_line_error(run_pyvmm("boot", "--disk", str(tmp_path / "none.img")), "none.img")


def test_unknown_disk_option_is_a_one_line_error(image):
    path, _ = image
    assert_one_line_error(run_pyvmm("boot", "--disk", f"{path},rw"), "rw")


@pytest.mark.parametrize("ioeventfd", [False, True], ids=["exit-loop", "ioeventfd"])
def test_hostile_requests_from_inside_the_guest_are_refused_and_the_vmm_survives(image, ioeventfd):
    path, digest = image
    args = ["boot", "--disk", str(path), "--cmdline", "virtio_selftest"]
    vm = run_pyvmm(*args + (["--ioeventfd"] if ioeventfd else []))
    assert vm.returncode == 0, (vm.stdout, vm.stderr)
    checks = [line for line in vm.stdout.splitlines() if line.startswith("selftest:")]
    assert len(checks) == 7, vm.stdout
    assert all(line.endswith(("refused as expected", ": ok")) for line in checks), checks
    assert "descriptor loop: refused as expected" in vm.stdout
    # ... and the workload that follows on the same, reset device still gets it right.
    assert vm.stdout.endswith(f"sha256={digest}\n")


# --- what a disk may be -----------------------------------------------------------------


def test_image_that_cannot_be_written_is_refused_without_ro(image):
    path, _ = image
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with immutable(path):
        refused = run_pyvmm("boot", "--disk", str(path))
        read_only = run_pyvmm("boot", "--disk", f"{path},ro")
    assert_one_line_error(refused, f"disk image {str(path)!r} is not writable", f"--disk {path},ro")
    # With ,ro the guest gets it read-only: the workload runs and cannot write its result.
    assert read_only.returncode == 2, read_only.stdout
    assert "read-only" in read_only.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("kind", ["a FIFO", "a character device", "a directory"])
def test_what_cannot_be_a_disk_is_a_one_line_error(tmp_path, guest_build, kind):
    path = {"a character device": "/dev/zero", "a directory": str(tmp_path)}.get(kind)
    if kind == "a FIFO":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)  # no reader or writer ever comes
    proc = run_pyvmm("boot", "--disk", path, timeout=60)
    assert_one_line_error(proc, f"disk image {path!r} is {kind}")


@pytest.fixture
def loop_device(image):
    """The image behind a loop block device (root only), detached afterwards."""
    path, digest = image
    attach = subprocess.run(
        ["losetup", "--find", "--show", str(path)], capture_output=True, text=True
    )
    if attach.returncode != 0:
        pytest.skip(f"no loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        yield device, path, digest
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


def test_block_device_is_a_disk_of_its_own_size(loop_device):
    device, path, digest = loop_device
    n = 3 * 1024 * 1024 + 100
    vm = run_pyvmm("boot", "--disk", device)
    assert vm.returncode == 0, (vm.stdout, vm.stderr)
    assert vm.stdout.endswith(f"workload: bytes={n} sha256={digest}\n")
    sectors = os.stat(path).st_size // 512
    assert f"virtio-blk: vda, {sectors} sectors" in vm.stdout
