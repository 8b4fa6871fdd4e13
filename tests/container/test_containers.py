"""The container lifecycle: run, the writable layer, stop/start, ps, logs, diff, rm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from containertest import PYVMM, entry, one_line_error

from vmm.container.engine import container as lifecycle
from vmm.container.linux import cgroups
from vmm.container.store.state import Store


def _busybox_layer(pyvmm) -> Path:
    digest = json.loads(pyvmm.ok("image", "inspect", "busybox"))["layers"][0]["digest"]
    return pyvmm.root / "layers" / "sha256" / digest[7:] / "diff"


def test_run_returns_the_command_exit_status(pyvmm):
    assert pyvmm("container", "run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3


def test_missing_command_exits_127_and_leaves_nothing(pyvmm):
    r = pyvmm("container", "run", "--name", "nocmd", "busybox", "no-such-command")
    assert r.returncode == 127
    assert "not found" in one_line_error(r)
    assert pyvmm("container", "inspect", "nocmd").returncode == 2


def test_write_to_lower_file_copies_up_and_leaves_the_layer_unchanged(pyvmm):
    original = (_busybox_layer(pyvmm) / "etc" / "passwd").read_text()
    pyvmm.ok("container", "run", "--name", "cow", "busybox", "sh", "-c", "echo x >> /etc/passwd")
    cid = pyvmm.inspect("cow")["id"]
    upper = pyvmm.root / "containers" / cid / "upper"
    assert (upper / "etc" / "passwd").read_text() == original + "x\n"
    assert (_busybox_layer(pyvmm) / "etc" / "passwd").read_text() == original


def test_writable_layer_survives_stop_and_start_and_goes_with_rm(pyvmm):
    script = "echo run >> /count; sleep 30"
    pyvmm.ok("container", "run", "-d", "--name", "keep", "busybox", "sh", "-c", script)
    cid = pyvmm.inspect("keep")["id"]
    count = pyvmm.root / "containers" / cid / "upper" / "count"
    pyvmm.ok("container", "stop", "-t", "0.1", "keep")
    assert pyvmm.inspect("keep")["status"] == "exited" and count.read_text() == "run\n"
    pyvmm.ok("container", "start", "keep")
    deadline = time.monotonic() + 5
    while count.read_text() != "run\nrun\n" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count.read_text() == "run\nrun\n"
    pyvmm.ok("container", "rm", "-f", "keep")
    assert not (pyvmm.root / "containers" / cid).exists()


def test_start_attached_runs_the_command_again_on_the_same_layer(pyvmm):
    pyvmm.ok("container", "run", "--name", "again", "busybox", "sh", "-c", "echo x >> /f; cat /f")
    assert pyvmm.ok("container", "start", "-a", "again") == "x\nx\n"


def test_rm_removes_symlinks_in_the_writable_layer_not_what_they_point_to(pyvmm, tmp_path):
    (tmp_path / "precious").write_text("keep\n")
    script = f"ln -s {tmp_path} /to-host-dir; ln -s {tmp_path}/precious /to-host-file"
    pyvmm.ok("container", "run", "--name", "links", "busybox", "sh", "-c", script)
    pyvmm.ok("container", "rm", "links")
    assert (tmp_path / "precious").read_text() == "keep\n"


def test_diff_lists_added_changed_and_deleted_paths(pyvmm):
    script = "touch /new; echo x >> /etc/group; rm /etc/passwd"
    pyvmm.ok("container", "run", "--name", "d", "busybox", "sh", "-c", script)
    lines = pyvmm.ok("container", "diff", "d").splitlines()
    assert {"A /new", "C /etc", "C /etc/group", "D /etc/passwd"} <= set(lines)


def test_detached_container_runs_in_background_and_logs_keep_its_output(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "bg", "busybox", "sh", "-c",
             "echo started; sleep 30")  # fmt: skip
    ps = pyvmm.ok("container", "ps")
    assert "bg" in ps and "Up" in ps
    deadline = time.monotonic() + 5
    while "started" not in pyvmm.ok("container", "logs", "bg") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pyvmm.ok("container", "logs", "bg") == "started\n"
    r = pyvmm("container", "rm", "bg")
    assert r.returncode == 2 and "is running" in one_line_error(r)


def test_foreground_output_reaches_the_caller_and_the_log(pyvmm):
    r = pyvmm(
        "container", "run", "--name", "fg-log", "busybox", "sh", "-c", "echo out; echo err >&2"
    )
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    assert sorted(pyvmm.ok("container", "logs", "fg-log").split()) == ["err", "out"]


def test_stop_ends_a_pid_1_that_ignores_sigterm(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "st", "busybox", "sleep", "30")
    pyvmm.ok("container", "stop", "-t", "0.2", "st")
    info = pyvmm.inspect("st")
    assert info["status"] == "exited" and info["exit_code"] == 137
    assert "st" not in pyvmm.ok("container", "ps") and "st" in pyvmm.ok("container", "ps", "-a")


def test_kill_sends_the_signal_to_pid_1(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "k", "busybox", "sh", "-c",
             "trap 'exit 7' TERM; while true; do sleep 0.1; done")  # fmt: skip
    pyvmm.ok("container", "kill", "-s", "TERM", "k")
    deadline = time.monotonic() + 5
    while pyvmm.inspect("k")["status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pyvmm.inspect("k")["exit_code"] == 7


def test_ps_after_the_runtime_is_killed_shows_the_container_dead_and_cleans_up(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "orphan", "busybox", "sleep", "30")
    info = pyvmm.inspect("orphan")
    os.kill(info["monitor_pid"], signal.SIGKILL)  # the daemon supervising the container
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{info['pid']}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "orphan" not in pyvmm.ok("container", "ps")
    assert "Exited (unknown)" in pyvmm.ok("container", "ps", "-a")
    assert not cgroups.for_container(info["id"], parent=Store(pyvmm.root).cgroup_parent).exists()


def test_killed_foreground_run_with_rm_is_cleaned_by_ps(pyvmm, root):
    env = {**os.environ, "PYVMM_ROOT": str(root)}
    p = subprocess.Popen([*PYVMM, "container", "run", "--rm", "--name", "fg", "busybox",
                          "sleep", "30"], env=env)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = pyvmm("container", "inspect", "fg")
        if r.returncode == 0 and json.loads(r.stdout)["status"] == "running":
            break
        time.sleep(0.05)
    pid = json.loads(r.stdout)["pid"]
    p.kill()  # the runtime; the kernel then kills the container (PR_SET_PDEATHSIG)
    p.wait()
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "fg" not in pyvmm.ok("container", "ps", "-a")


@pytest.mark.parametrize("name", ["", "..", "a/b", "x" * 65, "-lead"])
def test_bad_container_name_is_refused(pyvmm, name):
    r = pyvmm("container", "run", "--name", name, "busybox", "true")
    assert r.returncode == 2
    one_line_error(r)


def test_duplicate_name_is_refused(pyvmm):
    pyvmm.ok("container", "run", "--name", "twice", "busybox", "true")
    r = pyvmm("container", "run", "--name", "twice", "busybox", "true")
    assert r.returncode == 2 and "already in use" in one_line_error(r)


@pytest.mark.parametrize("path", ["proc", "dev"])
def test_image_whose_system_dir_is_a_symlink_to_its_root_is_refused(pyvmm, tmp_path, path):
    # Followed inside the rootfs, /proc -> / is the container's own root: not a place
    # for a mount.
    layer = [entry(path, tarfile.SYMTYPE, linkname="/"), entry("bin/busybox", data=b"")]
    pyvmm.import_tar(layer, f"sym{path}", tmp_path).check_returncode()
    r = pyvmm("container", "run", f"sym{path}", "sh")
    assert r.returncode == 2
    assert "resolves to the container's root" in one_line_error(r)
    pyvmm.ok("image", "rm", f"sym{path}")


def test_concurrent_runs_all_succeed_with_distinct_state(pyvmm):
    def run(i):
        return pyvmm("container", "run", "--name", f"par{i}", "busybox", "echo", str(i))

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(run, range(6)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    ps = pyvmm.ok("container", "ps", "-a")
    assert all(f"par{i}" in ps for i in range(6))


def test_one_process_can_run_containers_one_after_another(pyvmm, capfd):
    """Each run needs a PID namespace of its own: the first one's init is gone."""
    store = Store(pyvmm.root)
    for _ in range(2):
        _rec, status = lifecycle.run(store, "busybox", ["sh", "-c", "echo $$"], auto_remove=True)
        assert status == 0
    assert capfd.readouterr().out == "1\n1\n"


def test_the_engines_container_gets_what_its_config_json_says(pyvmm):
    """``pyvmm container`` is a client of the OCI core: a field added to the bundle's
    config.json reaches the container through ``spec.py`` and ``init.py`` (process
    oomScoreAdj, a sysctl) and the core's cgroup comes from its linux.resources."""
    script = "cat /proc/self/oom_score_adj /proc/sys/kernel/shmmni; sleep 0 & sleep 0 & wait"
    pyvmm.ok("container", "run", "--name", "cfg", "busybox", "sh", "-c", script)
    cid = pyvmm.inspect("cfg")["id"]
    path = pyvmm.root / "containers" / cid / "config.json"
    config = json.loads(path.read_text())
    config["process"]["oomScoreAdj"] = 500
    config["linux"]["sysctl"] = {"kernel.shmmni": "1234"}
    config["linux"]["resources"]["pids"] = {"limit": 2}  # sh and one sleep: no second
    path.write_text(json.dumps(config))
    r = pyvmm("container", "start", "-a", "cfg")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["500", "1234"], r.stdout
    assert "fork" in r.stderr or "Resource temporarily unavailable" in r.stderr, r.stderr
    pyvmm.ok("container", "rm", "cfg")
