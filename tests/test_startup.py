"""The hot commands import only what they need (docs/bench.md, "Start-up budget").

``pyvmm boot`` and ``pyvmm-runtime --version``/``state`` are paid as whole processes, a
boot by every user and the runtime by an engine on every step, so they must not import
the modules whose import alone costs a multiple of the interpreter's start: click (its
package import pulls in click.core, and with it inspect, typing, uuid, datetime),
argparse, the image-side engine and its click CLI, ``importlib.metadata`` (email,
zipfile, csv), or the benchmark package. Each command runs for real in a child with
``-X importtime`` and the test asserts on the modules it imported; the time itself is
measured by scripts/bench_startup.py, never here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vmtest import ROOT, needs_kvm

# Modules (with everything below them) that a hot command must not import; argparse
# (with gettext and locale, which its messages look up) included: both parse their
# flags from tables (vmm/cli/flags.py).
HEAVY = ("click", "importlib.metadata", "vmm.bench", "argparse", "gettext")
# What only some runs of pyvmm boot need, imported where used: dataclasses (and with it
# inspect, ast, dis, tokenize) for a snapshot's records (vmm/devices/serial_state.py),
# shutil and textwrap for the help screen.
BOOT_LAZY = ("dataclasses", "inspect", "shutil", "textwrap")
# What no plain boot needs, at a measured price: typing, and re with enum, which typing
# and pip's entry-point wrappers import (vmm/typedtuple.py, scripts/pyvmm), a fifth of a
# boot's start-up together; signal, for the kicks one vCPU is never sent.
BOOT_SPARED = ("typing", "re", "enum", "signal")
# pyvmm-runtime is the OCI core's command line; the engine above it is not its business.
ENGINE = ("vmm.cli.container", "vmm.container.engine.container", "vmm.container.image.images")
# What ``state`` of a container that is not running does not need: its cgroup (the
# freezer tells paused from running only), and the hooks' exec trampoline.
STATE_LAZY = ("vmm.container.linux.cgroups", "vmm.container.linux.exeseal")
RUNTIME = [sys.executable, "-X", "importtime", "-c",
           "import sys; from vmm.cli.runtime import main; sys.exit(main())"]  # fmt: skip


def imported(argv: list[str], **kw) -> tuple[set[str], subprocess.CompletedProcess]:
    """The modules a real run of ``argv`` imported (``-X importtime`` lists each once)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    names = {
        line.split("|")[2].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }
    return names, proc


def heavy(modules: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


def test_the_check_sees_heavy_modules():
    """The negative case: a run that does import click and the bench is caught."""
    modules, proc = imported(
        [sys.executable, "-X", "importtime", "-c", "import vmm.cli.bench, vmm.bench.compare"]
    )
    assert proc.returncode == 0, proc.stderr
    assert {"click", "click.core", "vmm.bench"} <= set(heavy(modules, HEAVY))


@needs_kvm
def test_boot_imports_no_click_no_metadata_no_bench():
    """The installed command, as a user runs it (its script is part of the cost)."""
    pyvmm = Path(sys.executable).with_name("pyvmm")
    modules, proc = imported([sys.executable, "-X", "importtime", str(pyvmm), "boot"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hello from ring 3" in proc.stdout
    assert "vmm.vm.machine" in modules  # it did boot through the machine
    assert heavy(modules, HEAVY + ENGINE + BOOT_LAZY + BOOT_SPARED) == []


@needs_kvm
def test_boot_through_the_click_group_runs_the_same_boot():
    """``pyvmm --root DIR boot`` goes through click (that is allowed) to the same code."""
    argv = [sys.executable, "-m", "vmm", "--root", "/nonexistent", "boot", "--cmdline", "-- 3"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "arg: 3" in proc.stdout


def test_runtime_version_imports_nothing_heavy():
    modules, proc = imported([*RUNTIME, "--version"])
    assert proc.returncode == 0 and "spec:" in proc.stdout, proc.stderr[-2000:]
    assert heavy(modules, HEAVY + ENGINE) == []


@pytest.fixture
def created(tmp_path):
    """A created (never started) container of pyvmm-runtime's on a busybox rootfs; on the
    way out it is deleted, and its state and cgroup must be gone."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a real container")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import build_images
    finally:
        sys.path.pop(0)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    build_images.busybox_rootfs(rootfs)
    bundle, root = tmp_path / "bundle", tmp_path / "state"
    bundle.mkdir()
    os.symlink(rootfs, bundle / "rootfs")
    runtime = [*RUNTIME[:1], *RUNTIME[3:], "--root", str(root)]
    subprocess.run([*runtime, "spec", "--bundle", bundle], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["sleep", "60"])
    cgroup = f"pyvmm-test-startup-{os.getpid()}"
    config["linux"]["cgroupsPath"] = f"/{cgroup}"
    (bundle / "config.json").write_text(json.dumps(config))
    subprocess.run([*runtime, "create", "--bundle", bundle, "c1"], check=True, timeout=60,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield root
    finally:
        subprocess.run([*runtime, "delete", "--force", "c1"], check=True, timeout=60)
    assert not list(root.glob("*")), "state left behind"
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{cgroup}")), "cgroup left behind"


def test_runtime_state_imports_nothing_heavy(created):
    modules, proc = imported([*RUNTIME, "--root", str(created), "state", "c1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["status"] == "created"
    assert heavy(modules, HEAVY + ENGINE + STATE_LAZY) == []


def test_runtime_update_memory_applies_the_limit_without_the_engine(created):
    """``update --memory`` parses Docker's sizes (``cgroups.parse_size``) without the
    engine's command line, and the limit reaches the container's cgroup."""
    modules, proc = imported([*RUNTIME, "--root", str(created), "update", "--memory", "48m", "c1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert heavy(modules, HEAVY + ENGINE) == []
    cgroup = f"pyvmm-test-startup-{os.getpid()}"
    limits = [*Path("/sys/fs/cgroup").glob(f"memory/{cgroup}/memory.limit_in_bytes"),
              *Path("/sys/fs/cgroup").glob(f"{cgroup}/memory.max")]  # fmt: skip
    assert limits and limits[0].read_text().strip() == str(48 << 20)


def test_runtime_update_bad_memory_is_one_line(created):
    proc = subprocess.run([*RUNTIME[:1], *RUNTIME[3:], "--root", str(created), "update",
                           "--memory", "lots", "c1"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("pyvmm-runtime: bad memory size 'lots'")


def finishing(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from vmm.cli.finish import finish\n" + code],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_finish_flushes_the_output_and_skips_the_teardown():
    """A command's output, still in Python's buffers, arrives; what only the interpreter's
    teardown would run (here an atexit handler) does not: the process ended in _exit."""
    proc = finishing("import atexit\natexit.register(print, 'teardown ran')\n"
                     "print('x' * 100000, end='')\nfinish(4)")  # fmt: skip
    assert proc.returncode == 4
    assert proc.stdout == "x" * 100000


def test_finish_waits_for_a_thread_that_is_not_done():
    """A thread that is not a daemon would be cut off by _exit: Python's own exit then."""
    proc = finishing("import threading, time\n"
                     "threading.Thread(target=lambda: (time.sleep(0.3), print('thread'))).start()\n"
                     "print('main')\nfinish(None)")  # fmt: skip
    assert proc.returncode == 0
    assert proc.stdout == "main\nthread\n"


def test_delete_force_of_a_deleted_container_needs_no_oci_core(tmp_path):
    """Docker's shim deletes each container a second time with --force: runc's answer,
    status 0, without importing the OCI core; a bad id is still refused by name."""
    root = ["--root", str(tmp_path)]
    modules, proc = imported([*RUNTIME, *root, "delete", "--force", "gone"])
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 0 and said == [], said
    assert "vmm.container.oci.runtime" not in modules and "vmm.container.oci.statedir" in modules
    modules, proc = imported([*RUNTIME, *root, "delete", "gone"])
    assert proc.returncode == 1 and "container gone does not exist" in proc.stderr
    modules, proc = imported([*RUNTIME, *root, "delete", "--force", "../etc"])
    assert proc.returncode == 1 and "invalid container id '../etc'" in proc.stderr
