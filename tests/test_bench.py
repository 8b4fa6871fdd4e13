"""``pyvmm bench``: the comparison in its fast mode, run for real as a user runs it.

Never a speed: what is asserted is that the figures exist and are consistent, that
every row did the work (printed the expected line), that a row which did not is
reported as a failure and not as a number, that bad options are one-line errors, and
that nothing is left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from vmtest import ROOT, assert_one_line_error, kvm_usable, run_pyvmm

from vmm.bench.compare import RowFailure, check
from vmm.bench.measure import CACHE_DIR, interrupt, read_until, run_processes
from vmm.kvm.kind import kvm_kind

_spec = importlib.util.spec_from_file_location("mkimage", ROOT / "scripts" / "mkimage.py")
mkimage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mkimage)

SIZE = 65536
LIAR = "workload: bytes=1 sha256=00"
CONTAINERS = os.geteuid() == 0 and os.path.exists("/bin/busybox")


def expected_line(tmp_path) -> str:
    """The line the workload must print for the fast mode's input (seed 0), computed here
    from an image made alike, independently of the bench."""
    sha = mkimage.make_image(tmp_path / "same.img", SIZE)
    return f"workload: bytes={SIZE} sha256={sha}"


def standard_rows() -> list[str]:
    rows = ["host"]
    if kvm_usable():
        rows.append("tiny-vm")
    if CONTAINERS:
        rows += ["container-volume", "container-bind"]
    return rows


@pytest.fixture
def bench(tmp_path):
    """Run ``pyvmm --root ROOT bench --fast ...`` with its scratch space in tmp_path;
    afterwards, check it left nothing behind there or in the container state."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    root = tmp_path / "state"

    def run(*args: str, timeout: float = 120):
        return run_pyvmm("--root", str(root), "bench", *args, env={"TMPDIR": str(scratch)},
                         timeout=timeout)  # fmt: skip

    yield run
    assert os.listdir(scratch) == []
    for kind in ("containers", "volumes"):
        assert not (root / kind).exists() or os.listdir(root / kind) == []


def test_fast_mode_every_row_matches_and_failing_rows_are_failures(bench, tmp_path):
    out = tmp_path / "bench.json"
    report = tmp_path / "bench.md"
    rows = standard_rows()
    proc = bench("--fast", "--rows", ",".join(rows), "--json", str(out), "--report", str(report),
                 "--row", f"liar=sh -c 'echo {LIAR}'", "--row", "broken=false {image}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    expected = expected_line(tmp_path)

    assert result["input"]["expected_line"] == expected
    assert result["settings"]["runs"] == 1 and result["settings"]["input_bytes"] == SIZE
    machine = result["machine"]
    assert machine["kvm"]["kind"] in ("pvm", "hardware", "none")
    assert {"kernel", "cpu_model", "pyvmm"} <= machine.keys()
    by_key = {r["key"]: r for r in result["rows"]}
    assert list(by_key) == [*rows, "liar", "broken"]

    for key in rows:
        row = by_key[key]
        assert row["status"] == "ok", (row["status"], row.get("reason"))
        assert row["result_line"] == expected
        assert row["run_command"]
        figures = row["figures"]
        for name in ("first_byte_ms", "result_ms", "done_ms", "rss_bytes"):
            f = figures[name]
            assert f["runs"] == 1 and f["min"] <= f["median"] <= f["max"]
        assert figures["first_byte_ms"]["median"] <= figures["done_ms"]["median"]
        disk = row["disk"]
        assert disk["total_bytes"] == sum(disk["parts"].values()) > disk["without_input_bytes"]
        assert disk["parts"]["input data"] >= SIZE
        assert row["label"] in proc.stdout
    if "tiny-vm" in by_key:
        vm = by_key["tiny-vm"]["figures"]
        assert {"inside_ms", "inside_result_ms", "guest_touched_bytes"} <= vm.keys()
        assert vm["inside_ms"]["median"] <= vm["inside_result_ms"]["median"]
    if CONTAINERS:
        for key in ("container-volume", "container-bind"):
            assert {"cgroup_peak_bytes", "inside_ms"} <= by_key[key]["figures"].keys()

    liar, broken = by_key["liar"], by_key["broken"]
    assert liar["status"] == "error" and liar["printed"] == LIAR
    assert broken["status"] == "error" and "exit status 1" in broken["reason"]
    for row in (liar, broken):
        assert "figures" not in row and "disk" not in row
        assert f"{row['label']}: error" in proc.stdout
    assert "Rows without figures" in report.read_text()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--runs", "0"], "--runs"),
        (["--runs", "x"], "--runs"),
        (["--scale", "1,0"], "--scale"),
        (["--size", "lots"], "--size"),
        (["--rows", "host,nope"], "unknown row 'nope'"),
        (["--row", "no-command"], "--row"),
        (["--json", "/nonexistent/dir/out.json"], "--json"),
        (["--report", "/"], "--report"),
    ],
)
def test_bad_options_are_one_line_errors(bench, args, fragment):
    assert_one_line_error(bench("--fast", "--rows", "host", *args), fragment)


def test_exits_subcommand_is_still_there(bench):
    proc = bench("exits", "--help")
    assert proc.returncode == 0 and "VM exit" in proc.stdout


@pytest.mark.skipif(not kvm_usable(), reason="needs a usable /dev/kvm")
def test_exits_breaks_one_exit_down_into_steps_that_add_up(bench, guest_build):
    proc = bench("exits", "--runs", "1", "--exits", "200", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("(d) one exit"))
    whole = float(lines[at].split("all ")[1].rstrip(")"))
    steps = [float(line.split()[-1]) for line in lines[at + 1 : at + 6]]
    assert "KVM_RUN called from Python" in lines[at + 2]
    # Differences of one set of medians, so they add up to the whole before each of the
    # six figures is rounded to 0.01: up to 6 x 0.005 apart after (0.020000000000003 was).
    assert abs(sum(steps) - whole) <= 0.03 + 1e-9


def test_a_command_past_its_timeout_is_killed_and_a_failure():
    (proc,) = run_processes([["sh", "-c", "echo started; exec sleep 30"]], timeout=0.5)
    assert proc.status is None and proc.stdout == b"started\n"
    with pytest.raises(RowFailure, match="did not finish"):
        check(proc, b"workload: bytes=0 sha256=x", 0.5)


def test_peak_memory_is_the_commands_own_not_the_callers():
    """The launcher keeps the Python parent's resident set out of the child's figure."""
    small, big = run_processes(
        [["true"], [sys.executable, "-c", "b = bytearray(64 << 20); b[::4096] = b'x' * (16384)"]],
        timeout=30,
    )
    assert small.status == 0 and big.status == 0, big.stderr
    assert small.maxrss < 8 << 20
    assert big.maxrss > 64 << 20


LINUX_CACHE = os.path.join(CACHE_DIR, "linux-vm")


@pytest.mark.skipif(
    not shutil.which("qemu-system-x86_64")
    or not os.path.isdir(LINUX_CACHE)
    or not any(n.endswith(".deb") for n in os.listdir(LINUX_CACHE)),
    reason="QEMU and a downloaded Debian cloud kernel are needed (pyvmm bench fetches them)",
)
def test_linux_vm_row_boots_the_cloud_kernel_and_says_how(bench, tmp_path):
    out = tmp_path / "bench.json"
    proc = bench("--fast", "--rows", "linux-vm", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok", row
    assert row["result_line"] == expected_line(tmp_path)
    accel = row["facts"]["accelerator"]
    assert accel.upper() in row["label"]
    assert row["run_command"][row["run_command"].index("-accel") + 1] == accel

    image = tmp_path / "in.img"
    mkimage.make_image(image, 4096)
    script = [sys.executable, ROOT / "scripts" / "qemu_reference.py", image, "--print-command"]
    printed = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("qemu-system-x86_64 -accel " + accel)
    assert f"accelerator {accel}" in printed.stderr


def test_workload_image_check_needs_the_same_executable(tmp_path):
    """The bench refuses a container image whose /bin/workload is another file."""
    if not CONTAINERS:
        pytest.skip("needs root and busybox-static")
    root = tmp_path / "state"
    other = tmp_path / "other"
    shutil.copy("/bin/busybox", other)
    subprocess.run([sys.executable, ROOT / "scripts" / "build_images.py", "--root", root,
                    "--workload", other], check=True, capture_output=True)  # fmt: skip
    out = tmp_path / "bench.json"
    proc = run_pyvmm("--root", str(root), "bench", "--fast", "--rows", "container-bind",
                     "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "could not run" and "another /bin/workload" in row["reason"]


def test_plot_is_a_png_of_the_rows(bench, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    proc = bench("--fast", "--rows", "host", "--scale", "1,2", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("module, kind", [("kvm_pvm", "pvm"), ("kvm_intel", "hardware")])
def test_kind_of_kvm_is_read_from_the_loaded_modules(tmp_path, module, kind):
    (tmp_path / "kvm").mkdir()
    (tmp_path / module).mkdir()
    found = kvm_kind(str(tmp_path))
    assert found["kind"] == kind and found["modules"] == [module]
    assert found["read_from"] == str(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(
    not kvm_usable() or not shutil.which("qemu-system-x86_64"), reason="needs /dev/kvm and QEMU"
)
def test_linux_rows_run_the_same_kernel_under_pyvmm_and_qemu_microvm(bench, tmp_path, linux_build):
    """Both Linux rows print the workload's line from the same kernel and initramfs, and
    report when /init started: between the first byte and the result line."""
    out = tmp_path / "bench.json"
    proc = bench("--fast", "--rows", "linux-pyvmm,linux-microvm", "--json", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"linux-pyvmm", "linux-microvm"}
    build, initramfs = linux_build
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["result_line"] == expected_line(tmp_path)
        assert build.vmlinux in row["run_command"] and initramfs in row["run_command"]
        f = {k: v["median"] for k, v in row["figures"].items()}
        assert f["first_byte_ms"] <= f["init_ms"] <= f["result_ms"] <= f["done_ms"]
    assert rows["linux-microvm"]["label"].startswith("Linux VM (QEMU microvm, KVM")
    # pyvmm's guest RAM is 256 MiB, mapped but backed only where Linux touched it
    touched = rows["linux-pyvmm"]["figures"]["guest_touched_bytes"]["median"]
    assert 1 << 20 < touched <= 256 << 20


def test_waiting_for_a_guest_line_ends_at_the_timeout_when_nothing_comes():
    """A Linux boot that stalls prints nothing: the wait for /init's line must end at its
    timeout all the same (it once read on for 13 minutes past a 10-minute one), and a
    process that ends first is said to have ended."""
    from vmm.errors import PyvmmError

    proc = subprocess.Popen(["sh", "-c", "echo booting; exec sleep 60"], stdout=subprocess.PIPE)
    try:
        assert read_until(proc, b"booting", 30, "sh") < 30
        started = time.monotonic()
        with pytest.raises(PyvmmError, match="a silent sh: no 'init' within 1 s"):
            read_until(proc, b"init", 1, "a silent sh")
        assert time.monotonic() - started < 10
    finally:
        interrupt(proc)
    assert proc.returncode is not None
    proc = subprocess.Popen(["true"], stdout=subprocess.PIPE)
    try:
        with pytest.raises(PyvmmError, match="true ended before 'init'"):
            read_until(proc, b"init", 30, "true")
    finally:
        interrupt(proc)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--counts", "1,0"], "--counts '0'"),
        (["--runs", "0"], "--runs"),
        (["--size", "lots"], "--size"),
        (["--json", "/nonexistent/dir/out.json"], "--json"),
    ],
)
def test_parallel_bad_options_are_one_line_errors(bench, args, fragment):
    assert_one_line_error(bench("parallel", *args), fragment)


def test_parallel_counts_every_copy_and_refuses_a_wrong_or_missing_line(guest_build, tmp_path):
    """``pyvmm bench parallel``'s one run: N real workloads at once, every line checked
    against the image's own; a wrong line, or fewer lines than copies, is no figure."""
    from vmm.bench.parallel import run_once
    from vmm.bench.workload import expected_line as line_of
    from vmm.errors import PyvmmError

    image = tmp_path / "input.img"
    mkimage.make_image(image, SIZE)
    expected = line_of(str(image))
    workload = str(ROOT / "guest" / "workload" / "workload")
    figures = run_once([[workload, str(image)]] * 3, 3, expected)
    assert figures.keys() == {"last_line_s", "cpu_s"}
    assert figures["last_line_s"] > 0 and figures["cpu_s"] >= 0
    # One process printing every copy's line (the VM's shape) counts as many.
    both = f"{workload} {image} & {workload} {image}; wait"
    assert run_once([["sh", "-c", both]], 2, expected).keys() == {"last_line_s", "cpu_s"}
    with pytest.raises(PyvmmError, match="not b'workload: bytes"):
        run_once([["echo", LIAR]], 1, expected)
    with pytest.raises(PyvmmError, match="1 result lines where 2 copies ran"):
        run_once([[workload, str(image)]], 2, expected)
