"""Fixtures for the container runtime tests: real containers, real mounts, real cgroups.

Every test gets the same per-session state directory (a tmp dir, never
/var/lib/pyvmm) holding the images scripts/build_images.py builds, and is checked on
the way out: whatever containers it left are force-removed, and then no mount may be
left under the session's tmp directory, no cgroup under the state root's parent, and
no pyvmm process of this session running. Only what the session made is compared:
other users of the machine mount, make cgroups and run containers meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from containertest import REPO, Pyvmm, core_states, host_state, pyvmm_processes

from vmm.container.linux.fdtree import remove_tree

LEFT = ("containers", "names", "endpoints")  # what a container leaves in the state root


def pytest_collection_modifyitems(config, items):
    """Every test here runs real containers: mark it ``root``, and skip it without root."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.root)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root: namespaces, mounts, cgroups"))


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    """The session's state directory, with busybox:latest and workload:latest imported;
    removed afterwards by the project's iterative walk: a test that failed may have left
    a layer 10,000 directories deep in it, which pytest's recursive clean-up cannot
    remove (a RecursionError at the end of the session)."""
    root = tmp_path_factory.mktemp("pyvmm-root")
    workload = REPO / "guest" / "workload" / "workload"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "build_images.py", "--root", root,
         "--workload", workload if workload.is_file() else "/bin/busybox"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield root
    remove_tree(root)


@pytest.fixture
def pyvmm(root: Path, tmp_path_factory):
    """The CLI runner; on the way out, removes the test's containers and volumes and
    checks that no mount, cgroup, container directory or pyvmm process was left behind.
    Mounts are looked for under the session's tmp directory (the state root and every
    test's tmp_path), cgroups under the state root's own parent, processes by the state
    root in their environment: what the test made, and nothing of other users."""
    work = tmp_path_factory.getbasetemp()
    before = host_state(root, work)
    runner = Pyvmm(root)
    try:
        yield runner
    finally:
        # ps reconciles and lists what is left: only when something is (a container's
        # record, name or network endpoint), a pyvmm start saved for most tests.
        if any(any(d.iterdir()) for d in map(root.joinpath, LEFT) if d.is_dir()):
            ids = runner("container", "ps", "-a", "-q").stdout.split()
            if ids:
                runner("container", "rm", "-f", *ids)
        for volume in (root / "volumes").glob("*"):  # so that no test sees another's
            runner("volume", "rm", volume.name)
    after = host_state(root, work)
    assert not after[0] - before[0], f"mounts left behind: {after[0] - before[0]}"
    assert not after[1] - before[1], f"cgroups left behind: {after[1] - before[1]}"
    assert not list((root / "containers").glob("*")), "container directories left behind"
    deadline = time.monotonic() + 5
    while pyvmm_processes(root) and time.monotonic() < deadline:
        time.sleep(0.02)  # a monitor records the exit and removes the cgroup, then exits
    assert not pyvmm_processes(root), "pyvmm processes left behind"
    assert not core_states(root), "OCI core states left behind"
