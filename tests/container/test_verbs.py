"""Docker's everyday verbs and flags on ``pyvmm container``, in real containers:
``exec``, ``-e``/``--env-file``, ``-w``, ``-u`` (names from the image's own files),
``--entrypoint``, ``-i``, and ``-it`` driven through a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import tarfile
import termios
import time
from pathlib import Path

import pytest
from containertest import (
    PYVMM,
    Pyvmm,
    busybox_rootfs,
    image_config,
    oci_layout,
    one_line_error,
)

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
# a comment, and a line that does not parse
broken
alice:x:1000:1001:Alice:/home/alice:/bin/sh
"""
GROUP = b"""root:x:0:
staff:x:1001:
wheel:x:10:alice
audio:x:29:bob,alice
"""


def _rootfs_tar(tmp: Path, links: dict[str, str] | None = None) -> bytes:
    """busybox's root filesystem as one layer, with ``PASSWD`` and ``GROUP`` (or, for
    a name in ``links``, a symlink to where it says)."""
    links = links or {}
    tree = tmp / "rootfs"
    tree.mkdir()
    busybox_rootfs(tree)
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        (tree / "etc" / name).unlink()
        if name in links:
            os.symlink(links[name], tree / "etc" / name)
        else:
            (tree / "etc" / name).write_bytes(text)
    out = tmp / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        for e in sorted(tree.iterdir()):
            tar.add(e, arcname=e.name)
    return out.read_bytes()


def _import(pyvmm: Pyvmm, tmp: Path, ref: str, layer: bytes, **run) -> None:
    layout = tmp / f"layout-{ref.replace(':', '_')}"
    oci_layout(layout, [layer], image_config([layer], **run))
    pyvmm.ok("image", "import", layout, ref)


@pytest.fixture(scope="module")
def users_image(root, tmp_path_factory) -> str:
    """``users``: busybox with alice (uid 1000, group staff, also in wheel and audio)."""
    tmp = tmp_path_factory.mktemp("users-image")
    _import(Pyvmm(root), tmp, "users", _rootfs_tar(tmp))
    return "users"


def test_env_file_then_e_override_the_image_env_in_docker_order(pyvmm, tmp_path, monkeypatch):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\n  A=from-file\nB=file b = kept as is\nFROM_HOST\nUNSET\n")
    monkeypatch.setenv("FROM_HOST", "host value")
    monkeypatch.delenv("UNSET", raising=False)
    r = pyvmm("container", "run", "--rm", "--env-file", env_file, "-e", "A=from-e", "-e",
              "PATH=/bin", "-e", "HOSTNAME=h", "busybox", "env")  # fmt: skip
    env = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert r.returncode == 0, r.stderr
    assert env["A"] == "from-e" and env["B"] == "file b = kept as is"
    assert env["FROM_HOST"] == "host value" and "UNSET" not in env
    assert env["PATH"] == "/bin" and env["HOSTNAME"] == "h"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-e", "=x"], "no variable name"),
        (["-e", "A B=1"], "contains whitespace"),
        (["--env-file", "/nonexistent/env"], "/nonexistent/env"),
        (["-w", "relative/dir"], "must be absolute"),
        (["-u", "nosuch"], "unable to find user nosuch"),
        (["-u", "root:nogroup"], "unable to find group nogroup"),
        (["-u", "root:"], "invalid user"),
        (["--entrypoint", ""], "no command given"),
    ],
)
def test_bad_process_flags_are_one_line_errors_and_leave_nothing(pyvmm, args, message):
    command = [] if "--entrypoint" in args else ["true"]
    r = pyvmm("container", "run", "--name", "bad", *args, "busybox", *command)
    assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm("container", "inspect", "bad").returncode == 2


def test_workdir_is_made_and_used(pyvmm):
    assert pyvmm.ok("container", "run", "--rm", "-w", "/made/here//x", "busybox", "pwd") == (
        "/made/here/x\n"
    )


def test_user_name_is_resolved_in_the_images_passwd_and_group(pyvmm, users_image):
    out = pyvmm.ok("container", "run", "--rm", "-u", "alice", users_image, "sh", "-c",
                   "id -u; id -g; id -G; echo $HOME; touch /x 2>/dev/null || echo denied",
                   )  # fmt: skip
    uid, gid, groups, home, denied = out.splitlines()
    assert (uid, gid, home, denied) == ("1000", "1001", "/home/alice", "denied")
    assert set(groups.split()) == {"1001", "10", "29"}


@pytest.mark.parametrize(
    "user, expected",
    [("1000", "1000 1001 /home/alice"), ("4242", "4242 0 /"),
     ("alice:wheel", "1000 10 /home/alice"), ("4242:29", "4242 29 /")],
)  # fmt: skip
def test_user_numbers_and_groups_follow_runcs_rules(pyvmm, users_image, user, expected):
    out = pyvmm.ok("container", "run", "--rm", "-u", user, users_image, "sh", "-c",
                   'echo "$(id -u) $(id -g) $HOME"')  # fmt: skip
    assert out.strip() == expected


def test_an_images_user_is_the_default_and_u_overrides_it(pyvmm, tmp_path):
    layer = _rootfs_tar(tmp_path)
    _import(pyvmm, tmp_path, "as-alice", layer, User="alice", Entrypoint=["id"], Cmd=["-u"])
    try:
        assert pyvmm.ok("container", "run", "--rm", "as-alice") == "1000\n"
        assert pyvmm.ok("container", "run", "--rm", "-u", "0", "as-alice") == "0\n"
        # Docker's rules: arguments replace Cmd, not the entrypoint; --entrypoint
        # replaces the entrypoint and drops Cmd.
        assert pyvmm.ok("container", "run", "--rm", "as-alice", "-g") == "1001\n"
        r = pyvmm.ok("container", "run", "--rm", "--entrypoint", "echo", "as-alice")
        assert r == "\n"
        assert (
            pyvmm.ok("container", "run", "--rm", "--entrypoint", "echo", "as-alice", "x") == "x\n"
        )
    finally:
        pyvmm("image", "rm", "as-alice")


def test_a_passwd_symlink_out_to_a_host_file_is_not_followed(pyvmm, tmp_path):
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:4321:4321::/:/bin/sh\n")
    _import(pyvmm, tmp_path, "linked", _rootfs_tar(tmp_path, {"passwd": str(host)}))
    try:
        r = pyvmm("container", "run", "--name", "linked", "-u", "evil", "linked", "id")
        assert r.returncode == 2 and "symbolic link" in one_line_error(r)
        assert pyvmm("container", "inspect", "linked").returncode == 2
    finally:
        pyvmm("image", "rm", "linked")


def test_stdin_reaches_the_container_only_with_i(pyvmm):
    assert pyvmm.ok("container", "run", "--rm", "-i", "busybox", "cat", input="in\n") == "in\n"
    assert pyvmm.ok("container", "run", "--rm", "busybox", "cat", input="in\n") == ""


@pytest.fixture
def running(pyvmm, users_image) -> str:
    """A running container of the users image, named ``ex``."""
    pyvmm.ok("container", "run", "-d", "--name", "ex", "--hostname", "exhost", "-e", "V=run",
             users_image, "sleep", "60")  # fmt: skip
    return "ex"


def test_exec_runs_in_the_containers_namespaces_and_returns_the_status(pyvmm, running):
    out = pyvmm.ok("container", "exec", running, "sh", "-c", "hostname; echo $V; ps -o pid,comm")
    lines = out.splitlines()
    assert lines[:2] == ["exhost", "run"]
    assert any(line.split() == ["1", "sleep"] for line in lines[2:])  # its PID namespace
    info = pyvmm.inspect(running)
    with open(f"/proc/{info['pid']}/cgroup") as f:
        init_cgroup = f.read()
    r = pyvmm("container", "exec", running, "sh", "-c", "cat /proc/self/cgroup; exit 3")
    assert r.returncode == 3 and r.stdout != "" and info["id"] in init_cgroup
    r = pyvmm("container", "exec", running, "no-such-command")
    assert r.returncode == 127 and "not found" in one_line_error(r)


def test_exec_takes_user_workdir_and_env(pyvmm, running):
    out = pyvmm.ok("container", "exec", "-u", "alice", "-w", "/tmp/w", "-e", "V=exec", running,
                   "sh", "-c", 'echo "$(id -u) $(id -g) $(pwd) $V $HOME"')  # fmt: skip
    assert out == "1000 1001 /tmp/w exec /home/alice\n"
    # a user the container made itself after it started is found too (its writable layer)
    pyvmm.ok(
        "container", "exec", running, "sh", "-c", "echo bob:x:2000:2000::/b:/bin/sh >> /etc/passwd"
    )
    assert pyvmm.ok("container", "exec", "-u", "bob", running, "id", "-u") == "2000\n"


def test_exec_stdin_only_with_i_and_detached_exec_runs_on(pyvmm, running):
    assert pyvmm.ok("container", "exec", "-i", running, "cat", input="x\n") == "x\n"
    assert pyvmm.ok("container", "exec", running, "cat", input="x\n") == ""
    assert pyvmm.ok("container", "exec", "-d", running, "sh", "-c", "sleep 0.3; touch /done") == ""
    deadline = time.monotonic() + 10
    while pyvmm("container", "exec", running, "test", "-e", "/done").returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_exec_in_a_stopped_or_unknown_container_is_refused(pyvmm):
    pyvmm.ok("container", "run", "--name", "done", "busybox", "true")
    for name in ("done", "nosuch"):
        r = pyvmm("container", "exec", name, "true")
        assert r.returncode == 2 and name in one_line_error(r)


class Terminal:
    """A pyvmm command on the slave of a pseudo-terminal of this test's, as a user's
    shell would run it; the test types on the master and reads the screen."""

    def __init__(self, root: Path, *args: str, rows: int = 33, cols: int = 101):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [*PYVMM, *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={**os.environ, "PYVMM_ROOT": str(root)},
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
        os.close(slave)
        self.screen = b""

    def read_until(self, token: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while token not in self.screen:
            assert time.monotonic() < deadline, f"no {token!r} in {self.screen[-300:]!r}"
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.screen += os.read(self.master, 4096)
                except OSError:
                    break
        return self.screen

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.killpg(self.proc.pid, signal.SIGWINCH)

    def close(self, timeout: float = 30) -> int:
        """The command's exit status (killed if it has not ended in ``timeout`` s)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            os.close(self.master)


def _drive_shell(term: Terminal) -> None:
    """Type into the container's shell: its terminal, its size (and a new one), Ctrl-C."""
    term.read_until(b"# ")
    term.type(b"tty; stty size; echo $((6*7))\r")
    screen = term.read_until(b"42\r\n")
    assert b"/dev/pts/" in screen and b"33 101\r\n" in screen
    term.resize(40, 120)
    term.type(b"stty size\r")
    term.read_until(b"40 120\r\n")
    term.type(b"sleep 60; echo slept\r")
    time.sleep(0.5)
    term.type(b"\x03")  # Ctrl-C: the container's terminal interrupts its sleep
    term.type(b"echo after $?\r")
    assert b"\nslept" not in term.read_until(b"after 130")
    term.type(b"exit 3\r")


def test_run_it_gives_an_interactive_shell_a_terminal(pyvmm):
    term = Terminal(pyvmm.root, "container", "run", "--rm", "-it", "busybox", "sh")
    try:
        _drive_shell(term)
    finally:
        assert term.close() == 3


def test_exec_it_gives_a_second_shell_a_terminal_of_its_own(pyvmm, running):
    term = Terminal(pyvmm.root, "container", "exec", "-it", running, "sh")
    try:
        _drive_shell(term)
    finally:
        assert term.close() == 3
    assert pyvmm.inspect(running)["status"] == "running"


def test_exec_it_ends_with_its_shell_though_a_child_keeps_the_terminal(pyvmm, running):
    term = Terminal(pyvmm.root, "container", "exec", "-it", running, "sh")
    try:
        term.read_until(b"# ")
        term.type(b"sleep 100 & echo bg-$((40+2))\r")
        term.read_until(b"bg-42")
        term.type(b"exit 4\r")
    finally:
        assert term.close(timeout=10) == 4


def test_it_without_a_terminal_is_refused_and_t_alone_runs(pyvmm):
    r = pyvmm("container", "run", "--name", "notty", "-it", "busybox", "true", input="")
    assert r.returncode == 2 and "not a TTY" in one_line_error(r)
    assert pyvmm("container", "inspect", "notty").returncode == 2
    r = pyvmm("container", "run", "--name", "t", "-t", "busybox", "sh", "-c", "tty; exit 4")
    assert r.returncode == 4 and r.stdout.startswith("/dev/pts/")
    assert pyvmm.ok("container", "logs", "t").startswith("/dev/pts/")
    assert json.loads(pyvmm.ok("container", "inspect", "t"))["tty"] is True


def _count(pyvmm, name: str) -> int:
    """Lines the container has written to /count so far (read in its writable layer)."""
    upper = pyvmm.root / "containers" / pyvmm.inspect(name)["id"] / "upper"
    try:
        return len((upper / "count").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _grows(pyvmm, name: str, seconds: float) -> bool:
    """Whether the count grows within ``seconds`` (at once, if it does)."""
    first = _count(pyvmm, name)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if _count(pyvmm, name) > first:
            return True
    return False


def test_pause_freezes_every_process_and_unpause_thaws_them(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "p", "busybox", "sh", "-c",
             "while :; do echo x >> /count; sleep 0.05; done")  # fmt: skip
    assert _grows(pyvmm, "p", 20)
    assert pyvmm.ok("container", "pause", "p") == "p\n"
    time.sleep(0.2)  # a write under way when the freezer struck lands
    assert not _grows(pyvmm, "p", 1.5) and pyvmm.inspect("p")["paused"] is True
    assert "Up" in pyvmm.ok("container", "ps") and "(Paused)" in pyvmm.ok("container", "ps")
    for verb in (["pause", "p"], ["exec", "p", "true"]):
        r = pyvmm("container", *verb)
        assert r.returncode == 2 and "paused" in one_line_error(r)
    pyvmm.ok("container", "unpause", "p")
    assert _grows(pyvmm, "p", 20) and pyvmm.inspect("p")["paused"] is False
    r = pyvmm("container", "unpause", "p")
    assert r.returncode == 2 and "not paused" in one_line_error(r)
    pyvmm.ok("container", "pause", "p")
    pyvmm.ok("container", "kill", "p")  # a paused container is killed too (thawed after)
    assert pyvmm.ok("container", "wait", "p") == "137\n"


def test_wait_prints_the_exit_status_once_the_container_has_exited(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "w", "busybox", "sh", "-c", "sleep 0.5; exit 9")
    assert pyvmm.ok("container", "wait", "w") == "9\n"
    assert pyvmm.inspect("w")["status"] == "exited"
    assert pyvmm.ok("container", "wait", "w") == "9\n"  # already exited: at once
    r = pyvmm("container", "wait", "nosuch")
    assert r.returncode == 2 and "no such container" in one_line_error(r)


def test_rename_changes_the_name_everywhere_and_refuses_a_taken_or_bad_one(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "old", "busybox", "sleep", "60")
    pyvmm.ok("container", "run", "--name", "taken", "busybox", "true")
    for new, message in (("taken", "already in use"), ("../x", "invalid container name"),
                         ("old", "already named")):  # fmt: skip
        r = pyvmm("container", "rename", "old", new)
        assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm.ok("container", "rename", "old", "new") == ""
    assert pyvmm("container", "inspect", "old").returncode == 2
    info = pyvmm.inspect("new")
    assert info["name"] == "new" and info["status"] == "running"
    config = json.loads((pyvmm.root / "containers" / info["id"] / "config.json").read_text())
    assert config["annotations"]["org.pyvmm.name"] == "new"
    assert pyvmm.ok("container", "exec", "new", "echo", "in") == "in\n"
    assert "new" in pyvmm.ok("container", "ps").split()


def test_top_lists_the_processes_in_the_containers_cgroup(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "t", "busybox", "sh", "-c",
             "sleep 101 & sleep 102 & wait")  # fmt: skip
    deadline = time.monotonic() + 10
    while "sleep 102" not in (out := pyvmm.ok("container", "top", "t")):
        assert time.monotonic() < deadline, out
        time.sleep(0.1)
    header, *rows = [line.split(None, 7) for line in out.splitlines()]
    assert header == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    by_cmd = {row[7]: row for row in rows}
    init = by_cmd["sh -c sleep 101 & sleep 102 & wait"]
    assert init[1] == str(pyvmm.inspect("t")["pid"])  # host pids, as Docker's top
    assert by_cmd["sleep 101"][2] == init[1] and by_cmd["sleep 102"][0] == "root"
    pyvmm.ok("container", "kill", "t")
    r = pyvmm("container", "top", "t")
    assert r.returncode == 2 and "not running" in one_line_error(r)


def test_stats_reports_cpu_memory_and_pids_from_the_cgroup(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "s", "--memory", "64M", "busybox", "sh", "-c",
             "head -c 20m /dev/zero > /dev/shm/f; while :; do :; done")  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        out = pyvmm.ok("container", "stats", "--no-stream", "s")
        header, row = out.splitlines()
        cells = [c for c in row.split("   ") if c.strip()]
        name, cpu, memory, share, pids = (c.strip() for c in cells[1:])
        used, limit = memory.split(" / ")
        if used.endswith("MiB") and float(used[:-3]) >= 20 or time.monotonic() > deadline:
            break
    assert header.split("   ")[:3] == ["CONTAINER ID", "NAME", "CPU %"]
    assert name == "s" and limit == "64.0MiB" and float(used[:-3]) >= 20
    assert float(cpu.rstrip("%")) > 1 and float(share.rstrip("%")) >= 20 / 64 * 100 - 1
    assert pids == "1"
    everything = pyvmm.ok("container", "stats", "--no-stream")  # every running one
    assert " s " in everything and len(everything.splitlines()) >= 2
    pyvmm.ok("container", "kill", "s")
    r = pyvmm("container", "stats", "--no-stream", "s")
    assert r.returncode == 2 and "not running" in one_line_error(r)


def test_read_only_root_keeps_dev_volumes_and_tmpfs_writable(pyvmm):
    script = ("touch /x 2>/dev/null || echo root-ro; touch /tmp/y 2>/dev/null || echo tmp-ro; "
              "touch /dev/z /dev/shm/z /data/z /scratch/z && echo rest-rw")  # fmt: skip
    out = pyvmm.ok("container", "run", "--rm", "--read-only", "-v", "rov:/data", "--tmpfs",
                   "/scratch", "busybox", "sh", "-c", script)  # fmt: skip
    # Docker mounts nothing on /tmp for --read-only: it is read-only too (--tmpfs /tmp)
    assert out.split() == ["root-ro", "tmp-ro", "rest-rw"]


def test_tmpfs_takes_mount_options_over_dockers_defaults(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "--tmpfs", "/run", "--tmpfs",
                   "/fast:size=1m,mode=700,exec", "busybox", "sh", "-c",
                   "grep -E ' /(run|fast) ' /proc/self/mountinfo; stat -c %a /fast; "
                   "head -c 2m /dev/zero > /fast/big 2>/dev/null || echo full")  # fmt: skip
    run, fast, mode, full = out.splitlines()
    assert "nosuid,nodev,noexec" in run.split()[5] and "tmpfs" in run
    assert "noexec" not in fast.split()[5] and "size=1024k" in fast and "mode=700" in fast
    assert (mode, full) == ("700", "full")


@pytest.mark.parametrize(
    "spec, message",
    [("relative", "must be absolute"), ("/", "container's root"), ("/proc/x", "under /proc"),
     ("/t:bogus", "unknown option"), ("/t:bind", "unknown option"), ("/t/../x", "no '..'")],
)  # fmt: skip
def test_bad_tmpfs_is_a_one_line_error(pyvmm, spec, message):
    r = pyvmm("container", "run", "--name", "badtmpfs", "--tmpfs", spec, "busybox", "true")
    assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm("container", "inspect", "badtmpfs").returncode == 2


def test_create_makes_a_container_that_start_runs(pyvmm):
    cid = pyvmm.ok("container", "create", "--name", "made", "-e", "X=1", "busybox", "sh", "-c",
                   "echo $X; exit 4").strip()  # fmt: skip
    assert len(cid) == 64 and pyvmm.inspect("made")["status"] == "created"
    assert "Created" in pyvmm.ok("container", "ps", "-a")
    r = pyvmm("container", "start", "-a", "made")
    assert (r.returncode, r.stdout) == (4, "1\n")
    r = pyvmm("container", "create", "--name", "made", "busybox", "true")
    assert r.returncode == 2 and "already in use" in one_line_error(r)


def _zombies(pyvmm, name: str) -> int:
    out = pyvmm.ok("container", "exec", name, "ps", "-o", "stat")
    return sum(line.startswith("Z") for line in out.splitlines())


def test_init_reaps_orphans_and_passes_stops_sigterm_on(pyvmm):
    # An orphan is reparented to PID 1; sleep as PID 1 never reaps it: a zombie stays.
    script = "(sleep 0.1 &); exec sleep 60"
    pyvmm.ok("container", "run", "-d", "--name", "z", "busybox", "sh", "-c", script)
    pyvmm.ok("container", "run", "-d", "--name", "nz", "--init", "busybox", "sh", "-c", script)
    deadline = time.monotonic() + 10
    while _zombies(pyvmm, "z") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert _zombies(pyvmm, "nz") == 0
    top = pyvmm.ok("container", "exec", "nz", "ps", "-o", "pid,comm").split()
    assert top[top.index("1") + 1] == "pyvmm-init"
    # sleep as PID 1 ignores SIGTERM (stop waits, then SIGKILL: 137); under --init the
    # signal reaches it and ends it (143), and the exit status is the command's.
    pyvmm.ok("container", "run", "-d", "--name", "i", "--init", "busybox", "sleep", "60")
    pyvmm.ok("container", "stop", "-t", "20", "i")
    assert pyvmm.inspect("i")["exit_code"] == 143
    assert (
        pyvmm("container", "run", "--rm", "--init", "busybox", "sh", "-c", "exit 5").returncode == 5
    )
    r = pyvmm("container", "run", "--rm", "--init", "busybox", "no-such-command")
    assert r.returncode == 127 and "no-such-command" in r.stderr


def test_init_under_a_terminal_passes_ctrl_c_to_the_command(pyvmm):
    term = Terminal(pyvmm.root, "container", "run", "--rm", "-it", "--init", "busybox", "sh")
    try:
        _drive_shell(term)
    finally:
        assert term.close() == 3


def test_cp_copies_both_ways_running_or_stopped_keeping_modes(pyvmm, tmp_path):
    tree = tmp_path / "in"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("hello\n")
    os.chmod(tree / "sub" / "f", 0o751)
    os.symlink("sub/f", tree / "link")
    pyvmm.ok("container", "run", "-d", "--name", "cp", "busybox", "sh", "-c",
             "mkdir /d; echo from-c > /d/x; exec sleep 60")  # fmt: skip
    deadline = time.monotonic() + 10
    while pyvmm("container", "exec", "cp", "test", "-e", "/d/x").returncode:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pyvmm.ok("container", "cp", tree, "cp:/") == ""
    out = pyvmm.ok("container", "exec", "cp", "sh", "-c",
                   "cat /in/sub/f; stat -c %a /in/sub/f; readlink /in/link")  # fmt: skip
    assert out == "hello\n751\nsub/f\n"
    pyvmm.ok("container", "cp", "cp:/d", tmp_path / "out")  # a new name: made
    assert (tmp_path / "out" / "x").read_text() == "from-c\n"
    (tmp_path / "existing").mkdir()
    pyvmm.ok("container", "cp", "cp:/d/x", tmp_path / "existing")  # a directory: into it
    assert (tmp_path / "existing" / "x").read_text() == "from-c\n"
    pyvmm.ok("container", "cp", tree / "sub" / "f", "cp:/d/x")  # a file replaces a file
    assert pyvmm.ok("container", "exec", "cp", "cat", "/d/x") == "hello\n"
    pyvmm.ok("container", "stop", "-t", "0.1", "cp")
    pyvmm.ok("container", "cp", "cp:/in/sub/f", tmp_path / "from-stopped")
    assert (tmp_path / "from-stopped").read_text() == "hello\n"
    pyvmm.ok("container", "cp", tree / "sub" / "f", "cp:/into-stopped")
    diff = pyvmm.ok("container", "diff", "cp").split("\n")
    assert "A /into-stopped" in diff and "A /in/sub/f" in diff


def test_cp_never_leaves_the_container_by_dotdot_or_symlinks(pyvmm, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    pyvmm.ok("container", "run", "-d", "--name", "esc", "busybox", "sh", "-c",
             f"ln -s {host} /abs; ln -s ../../../../../../{host} /rel; ln -s / /root-link; "
             "exec sleep 60")  # fmt: skip
    deadline = time.monotonic() + 10
    while pyvmm("container", "exec", "esc", "test", "-L", "/root-link").returncode:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for path in ("esc:/abs/secret", "esc:/rel/secret", f"esc:/../../../../{host}/secret",
                 f"esc:/root-link/{host}/secret"):  # fmt: skip
        r = pyvmm("container", "cp", path, tmp_path / "stolen")
        assert r.returncode == 2 and "no such file" in one_line_error(r).lower(), path
        assert not (tmp_path / "stolen").exists()
    (tmp_path / "payload").write_text("planted\n")
    for path in ("esc:/abs/planted", "esc:/rel/planted", f"esc:/../../../{host}/planted"):
        r = pyvmm("container", "cp", tmp_path / "payload", path)
        assert r.returncode == 2, path
    assert sorted(p.name for p in host.iterdir()) == ["secret"]  # the host dir untouched
    # a symlink itself is copied as a symlink, never followed
    pyvmm.ok("container", "cp", "esc:/abs", tmp_path / "abs-link")
    assert os.readlink(tmp_path / "abs-link") == str(host)
    for bad in (["a", "b"], ["esc:/x", "esc:/y"]):
        r = pyvmm("container", "cp", *bad)
        assert r.returncode == 2 and "exactly one" in one_line_error(r)


@pytest.mark.parametrize(
    "args, message",
    [(["-u", "nosuch"], "unable to find user"), (["-w", "rel"], "must be absolute"),
     (["-d", "-t"], "-d with -t"), (["-e", "=x"], "no variable name")],
)  # fmt: skip
def test_bad_exec_flags_are_one_line_errors_and_start_nothing(pyvmm, running, args, message):
    before = pyvmm.ok("container", "top", running).count("\n")
    r = pyvmm("container", "exec", *args, running, "sleep", "30")
    assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm.ok("container", "top", running).count("\n") == before
