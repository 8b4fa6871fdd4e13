"""Resource limits through cgroups, v1 here and v2 where the host has it."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from containertest import PYVMM

from vmm.container.linux import cgroups
from vmm.container.linux.cgroups import CgroupV2, Limits
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

V1 = cgroups.host_version() == "v1"


def test_process_over_memory_limit_is_oom_killed_with_137(pyvmm):
    r = pyvmm("container", "run", "--name", "hog", "--memory", "32M", "busybox",
              "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")  # fmt: skip
    assert r.returncode == 137
    assert "out of memory" in r.stderr
    info = pyvmm.inspect("hog")
    assert info["oom_killed"] is True and info["exit_code"] == 137
    assert 0 < info["peak_memory"] <= 32 * 2**20


def test_process_under_memory_limit_is_not_killed(pyvmm):
    r = pyvmm("container", "run", "--rm", "--memory", "128M", "busybox",
              "dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1")  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_fork_bomb_stops_at_the_pids_limit(pyvmm):
    script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait"
    r = pyvmm("container", "run", "--rm", "--pids", "6", "busybox", "sh", "-c", script)
    assert "can't fork" in r.stderr


def test_inspect_reports_peak_memory_and_the_cgroup_is_gone_after_exit(pyvmm):
    cid = pyvmm.ok("container", "run", "-d", "--cpus", "0.5", "busybox", "sleep", "30").strip()
    if V1:
        parent = Store(pyvmm.root).cgroup_parent
        quota = Path(f"/sys/fs/cgroup/cpu/{parent}/{cid}/cpu.cfs_quota_us").read_text()
        assert int(quota) == 50_000
    pyvmm.ok("container", "stop", "-t", "0.1", cid)
    info = pyvmm.inspect(cid)
    assert info["peak_memory"] > 0
    assert not cgroups.for_container(cid, parent=Store(pyvmm.root).cgroup_parent).exists()


@pytest.fixture
def unified() -> Path:
    """A cgroup2 hierarchy: the host's own on a v2 host; on a hybrid host the
    controller-less one mounted at /sys/fs/cgroup/unified."""
    for path in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (path / "cgroup.controllers").exists():
            return path
    pytest.skip("no cgroup2 hierarchy mounted")


def test_v2_cgroup_holds_a_process_and_removal_kills_it(unified):
    cg = CgroupV2(os.urandom(8).hex(), "pyvmm-test-" + os.urandom(4).hex(), unified)
    cg.create(Limits())
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cg.add(sleeper.pid)
        assert str(sleeper.pid) in (cg.path / "cgroup.procs").read_text().split()
        cg.remove()
        assert sleeper.wait(timeout=5) == -9
        assert not cg.exists() and not cg.path.parent.exists()
    finally:
        sleeper.kill()
        cg.remove()


def test_a_cgroup_removed_under_an_open_file_counts_as_gone(unified):
    """A file of a cgroup opened before another process removed it answers ENODEV, not
    ENOENT (`rm -f` reading cgroup.procs while the container's monitor removes the
    cgroup: a clean clone's run saw "pyvmm: No such device"). The cgroup code takes
    both for "gone"; any other error still stops it."""
    cg = CgroupV2(os.urandom(8).hex(), "pyvmm-test-" + os.urandom(4).hex(), unified)
    cg.create(Limits())
    try:
        with open(cg.path / "cgroup.procs") as f:
            cg.remove()
            with pytest.raises(OSError) as e:
                f.read()
            assert e.value.errno == errno.ENODEV
            with cgroups._unless_gone():
                f.read()
        with pytest.raises(PermissionError), cgroups._unless_gone():
            raise PermissionError(errno.EACCES, "not gone")
    finally:
        cg.remove()


def test_v2_fork_inside_gives_a_child_born_in_the_cgroup(unified):
    cg = CgroupV2(os.urandom(8).hex(), "pyvmm-test-" + os.urandom(4).hex(), unified)
    cg.create(Limits())
    r, w = os.pipe()
    try:
        pid = cg.fork_inside()
        if pid == 0:  # the child: report where it is, first thing, and never return
            try:
                with open("/proc/self/cgroup", "rb") as f:
                    os.write(w, f.read())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            lines = f.read().decode().splitlines()
        assert os.waitpid(pid, 0)[1] == 0
        assert f"0::/{cg.parent}/{cg.cid}" in lines
    finally:
        cg.remove()
    assert not cg.exists()


def test_v2_limit_without_its_controller_fails_cleanly(unified):
    available = (unified / "cgroup.controllers").read_text().split()
    if "memory" in available:
        pytest.skip("this cgroup2 hierarchy has the memory controller")
    cg = CgroupV2(os.urandom(8).hex(), "pyvmm-test-" + os.urandom(4).hex(), unified)
    with pytest.raises(PyvmmError, match="no memory controller"):
        cg.create(Limits(memory=64 << 20))
    assert not cg.exists() and not cg.path.parent.exists()


def test_container_runs_in_a_cgroup2_hierarchy_mounted_in_a_private_namespace(root, pyvmm):
    """Mounting cgroup2 over /sys/fs/cgroup in a private mount namespace makes pyvmm
    use its v2 implementation end to end, even on a v1 host (where cgroup2 owns no
    controllers, so a limit must fail cleanly; on a v2 host it must be enforced)."""
    unified = Path("/sys/fs/cgroup") if not V1 else Path("/sys/fs/cgroup/unified")
    if not (unified / "cgroup.controllers").exists():
        pytest.skip("this kernel has no cgroup2 hierarchy mounted")
    env = {**os.environ, "PYVMM_ROOT": str(root)}
    script = 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"'

    def run(*args):
        argv = [*PYVMM, "container", "run", *args]
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *argv],
                              env=env, capture_output=True, text=True)  # fmt: skip

    r = run("-d", "busybox", "sleep", "30")
    assert r.returncode == 0, r.stderr
    info = pyvmm.inspect(r.stdout.strip())
    assert info["cgroup"] == "v2"
    parent = Store(root).cgroup_parent
    procs = (unified / parent / info["id"] / "cgroup.procs").read_text().split()
    assert str(info["pid"]) in procs
    pyvmm.ok("container", "rm", "-f", info["id"])
    r = run("--rm", "--memory", "32M", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M")
    if "no memory controller" in r.stderr:
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    else:
        assert r.returncode == 137
