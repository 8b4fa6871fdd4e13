"""No host executable within a container's reach (the shape of runc's CVE-2019-5736).

Every pyvmm process that joins a container's namespaces is, until its execve, the
host's Python interpreter: a container that opens its ``/proc/<pid>/exe`` holds the
host's interpreter, and a descriptor kept until no process runs that binary any more
can write it. Each attack here runs for real, against a private *copy* of this
interpreter (``pyvmm``/``pyvmm-runtime`` run on it), so that a success damages only
the copy; and each asserts that the container opened nothing of the host's and the
copy is unchanged.

``/evil`` is the image's ``#!/proc/self/exe`` script: exec'd straight from pyvmm's
process, the kernel would run ``/proc/self/exe`` (the host interpreter) on it inside
the container, where it is Python code (the image carries the few stdlib files the
interpreter needs to start) that opens ``/proc/self/exe`` and leaves behind a process
holding it that writes once the copy is no longer running.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest
from containertest import (
    Runtime,
    busybox_rootfs,
    entry,
    image_config,
    leaves_nothing,
    oci_layout,
    one_line_error,
)

from vmm.container.oci.spec import default

EVIL = """#!/proc/self/exe
import os
exe = os.open("/proc/self/exe", os.O_RDONLY)
with open("/loot/opened", "w") as f:
    f.write(os.readlink("/proc/self/exe"))
if os.fork() == 0:
    os.set_inheritable(exe, True)
    os.execv("/bin/sh", ["sh", "-c", WRITER.format(fd=exe)])
"""
# Append to the interpreter once no process runs it (ETXTBSY until then).
WRITER = (
    "for i in $(seq 100); do printf pwned 2>/dev/null >> /proc/self/fd/{fd}"
    " && echo > /loot/written && exit; sleep 0.1; done"
)
# A container's PID 1 watching for processes of other binaries than its own busybox
# and copying each one's executable out, through /proc/<pid>/exe.
WATCHER = """
i=0
while :; do
  for p in /proc/[0-9]*; do
    n=${p#/proc/}
    [ -e /loot/exe.$n ] || [ $p/exe -ef /proc/1/exe ] && continue
    cat $p/exe > /loot/exe.$n.tmp 2>/dev/null && mv /loot/exe.$n.tmp /loot/exe.$n &&
      readlink $p/exe >> /loot/opened && printf pwned 2>/dev/null >> $p/exe && echo > /loot/written
    rm -f /loot/exe.$n.tmp
  done
  i=$((i+1)); echo $i > /loot/passes.tmp && mv /loot/passes.tmp /loot/passes
done
"""
PYLIB = "/pylib"  # PYTHONHOME in the container: what the host interpreter needs to start
PYHOME = ["PYTHONHOME=" + PYLIB]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def interpreter(tmp_path) -> Path:
    """A private copy of this interpreter, in a venv of its own that sees this one's
    packages: a successful attack damages only it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "python3"
    shutil.copy2(os.path.realpath(sys.executable), exe)
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    lib = Path(sysconfig.get_path("purelib"))
    mine = venv / lib.relative_to(sys.prefix)
    mine.parent.mkdir(parents=True)
    mine.symlink_to(lib)
    return exe


def hostile_rootfs(dest: Path) -> Path:
    """busybox, ``/evil``, and what the host's interpreter needs to start: its shared
    libraries (copies, at their host paths) and a few stdlib files."""
    dest.mkdir()
    busybox_rootfs(dest)
    ldd = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for lib in re.findall(r"(/\S+) \(0x", ldd):
        copy = dest / lib.lstrip("/")
        if not copy.exists():  # (/lib64 may be a link into /lib in busybox's tree)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, copy)
    (dest / "evil").write_text(EVIL.replace("WRITER", repr(WRITER)))
    os.chmod(dest / "evil", 0o755)
    stdlib = Path(sysconfig.get_path("stdlib"))
    encodings = dest / PYLIB.strip("/") / stdlib.relative_to(sys.base_prefix) / "encodings"
    encodings.mkdir(parents=True)
    for name in ("__init__", "aliases", "utf_8", "ascii", "latin_1"):
        shutil.copy(stdlib / "encodings" / f"{name}.py", encodings)
    (dest / "loot").mkdir()
    return dest


@pytest.fixture
def loot(tmp_path) -> Path:
    path = tmp_path / "loot"
    path.mkdir()
    return path


def assert_untouched(interpreter: Path, digest: str, loot: Path) -> None:
    """The container opened nothing of the host's (a sealed memfd copy at most), and
    the interpreter is unchanged."""
    opened = loot / "opened"
    host = [t for t in (opened.read_text().splitlines() if opened.exists() else [])
            if not t.startswith("/memfd:")]  # fmt: skip
    if host:  # let the writer it left show what that means
        deadline = time.monotonic() + 10
        while not (loot / "written").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    written = (loot / "written").exists()
    assert not host, f"the container opened {host}" + (" and wrote to it" if written else "")
    assert _sha(interpreter) == digest, "the host's interpreter was changed"


def _runtime(tmp_path: Path, interpreter: Path, loot: Path) -> Runtime:
    return Runtime(tmp_path / "state", tmp_path, hostile_rootfs(tmp_path / "rootfs"),
                   python=interpreter)  # fmt: skip


def _with_loot(loot: Path) -> list[dict]:
    return [*default()["mounts"],
            {"destination": "/loot", "type": "bind", "source": str(loot),
             "options": ["rbind", "rw"]}]  # fmt: skip


def test_exec_of_a_proc_self_exe_script_runs_no_host_executable(tmp_path, interpreter, loot):
    digest = _sha(interpreter)
    with leaves_nothing(_runtime(tmp_path, interpreter, loot)) as rt:
        b = rt.bundle(["sleep", "30"], mounts=_with_loot(loot))
        rt.ok("run", "--detach", "--bundle", b, "victim")
        rt("exec", *(f"--env={e}" for e in PYHOME), "victim", "/evil", timeout=30)
    assert_untouched(interpreter, digest, loot)


def test_start_hook_of_a_proc_self_exe_script_runs_no_host_executable(tmp_path, interpreter, loot):
    digest = _sha(interpreter)
    hooks = {"startContainer": [{"path": "/evil", "env": PYHOME}]}
    with leaves_nothing(_runtime(tmp_path, interpreter, loot)) as rt:
        rt.run(["true"], mounts=_with_loot(loot), hooks=hooks)
    assert_untouched(interpreter, digest, loot)


def test_container_run_of_a_proc_self_exe_entrypoint_runs_no_host_executable(
    tmp_path, pyvmm, interpreter, loot
):
    digest = _sha(interpreter)
    rootfs = hostile_rootfs(tmp_path / "rootfs")
    layers = [tar_bytes_of(rootfs)]
    config = image_config(layers, Cmd=["/evil"], Env=["PATH=/bin", *PYHOME])
    oci_layout(tmp_path / "oci", layers, config)
    pyvmm.command[0] = str(interpreter)
    try:
        pyvmm.ok("image", "import", tmp_path / "oci", "evil-entrypoint")
        pyvmm("container", "run", "--rm", "-v", f"{loot}:/loot", "evil-entrypoint")
    finally:
        pyvmm("image", "rm", "evil-entrypoint")
    assert_untouched(interpreter, digest, loot)


def tar_bytes_of(tree: Path) -> bytes:
    import io

    from vmm.container.image import unpack

    buf = io.BytesIO()
    unpack.tar_directory(tree, buf)
    return buf.getvalue()


def test_an_init_in_a_shared_pid_namespace_runs_from_a_sealed_copy(tmp_path, interpreter, loot):
    """A created container's init sits in the PID namespace it joins until ``start``.
    A watcher there holding CAP_SYS_PTRACE gets past non-dumpable (and past the
    init's full capability set): all it may find is a sealed copy."""
    digest = _sha(interpreter)
    sets = ("bounding", "effective", "permitted")
    caps = {s: [*default()["process"]["capabilities"][s], "CAP_SYS_PTRACE"] for s in sets}
    with leaves_nothing(_runtime(tmp_path, interpreter, loot)) as rt:
        watcher = rt.bundle(["sh", "-c", WATCHER], name="watcher", mounts=_with_loot(loot),
                            process__capabilities=caps)  # fmt: skip
        rt.ok("run", "--detach", "--bundle", watcher, "watcher")
        pid = json.loads(rt.ok("state", "watcher"))["pid"]
        spaces = [n if n["type"] != "pid" else {"type": "pid", "path": f"/proc/{pid}/ns/pid"}
                  for n in default()["linux"]["namespaces"]]  # fmt: skip
        b = rt.bundle(["true"], name="victim", linux__namespaces=spaces)
        rt.ok("create", "--bundle", b, "victim")
        passes = _passes(loot)
        deadline = time.monotonic() + 60  # (a loaded machine: each pass forks)
        while _passes(loot) < passes + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _passes(loot) >= passes + 3, "the watcher stopped watching"
    assert_untouched(interpreter, digest, loot)


def _passes(loot: Path) -> int:
    try:
        return int((loot / "passes").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_a_program_the_trampoline_cannot_exec_is_a_one_line_error(tmp_path, pyvmm):
    """Through the trampoline, a failed exec is still reported by pyvmm, in one line:
    126 for a file that is not a program (Docker's status), 1 from ``exec`` (runc's)."""
    pyvmm.import_tar([entry("bad", data=b"not a program", mode=0o755)], "badexec", tmp_path)
    try:
        r = pyvmm("container", "run", "--rm", "badexec", "/bad")
        assert r.returncode == 126
        assert "/bad: Exec format error" in one_line_error(r)
    finally:
        pyvmm("image", "rm", "badexec")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    (rootfs / "bad").write_bytes(b"not a program")
    os.chmod(rootfs / "bad", 0o755)
    with leaves_nothing(Runtime(tmp_path / "state", tmp_path, rootfs)) as rt:
        rt.ok("run", "--detach", "--bundle", rt.bundle(["sleep", "30"]), "c")
        r = rt("exec", "c", "/bad")
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and lines == ["pyvmm-runtime: exec: /bad: Exec format error"]


@pytest.mark.parametrize("ptrace", [True, False])
def test_exec_into_a_container_with_cap_sys_ptrace_runs_from_a_sealed_copy(tmp_path, ptrace):
    """Non-dumpable does not stop a process holding CAP_SYS_PTRACE in the host's user
    namespace: ``exec`` into such a container re-executes pyvmm-runtime from a sealed
    copy of the interpreter first (only then: it costs an interpreter start)."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    sets = ("bounding", "effective", "permitted")
    extra = ["CAP_SYS_PTRACE"] if ptrace else []
    caps = {s: [*default()["process"]["capabilities"][s], *extra] for s in sets}
    with leaves_nothing(Runtime(tmp_path / "state", tmp_path, rootfs)) as rt:
        rt.ok("run", "--detach", "--bundle", rt.bundle(["sleep", "30"], process__capabilities=caps),
              "c")  # fmt: skip
        command = [*rt.command, "--root", str(rt.root), "exec", "c", "sleep", "3"]
        with subprocess.Popen(command, env=rt.env, stdin=subprocess.DEVNULL) as runtime:
            time.sleep(1.5)  # well into the sleep: the runtime waits for it
            exe = os.readlink(f"/proc/{runtime.pid}/exe")
            assert runtime.wait(30) == 0
    assert exe.startswith("/memfd:pyvmm-python") == ptrace, exe


# Every process of the container's but its init and this shell.
LIST_OTHERS = 'cd /proc && for p in [0-9]*; do [ "$p" = 1 ] || [ "$p" = $$ ] || echo "$p"; done'


def _freezer(pid: int) -> Path:
    """The file that freezes the cgroup ``pid`` is in (v1's freezer, or v2's)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return Path("/sys/fs/cgroup/freezer", path.lstrip("/"), "freezer.state")
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup", path.lstrip("/"), "cgroup.freeze")
    raise AssertionError(f"no freezer for {pid}")


def _inside(pid: int, script: str) -> subprocess.CompletedProcess:
    """``script`` run as root of the user namespace of ``pid``'s container (all of its
    capabilities there, CAP_SYS_PTRACE included; none on the host), in its mount and
    PID namespaces: what a process in the container may do at best."""
    return subprocess.run(["nsenter", "-t", str(pid), "-U", "-m", "-p", "--", "/bin/sh", "-c",
                           script], capture_output=True, text=True, timeout=30)  # fmt: skip


def test_pyvmm_processes_in_a_container_are_non_dumpable_until_their_execve(tmp_path):
    """The step that alone closes the window: in a container with a user namespace of
    its own, its root holds CAP_SYS_PTRACE over every process there, so the kernel's
    uid and capability checks pass, and only a process being non-dumpable (its mm,
    exec'd on the host, belongs to the host's user namespace) keeps ``/proc/<pid>/exe``
    (the host's interpreter) shut. Seen from inside: the init of a created container,
    waiting for ``start``, and an ``exec`` caught joining (held by a frozen cgroup)
    cannot be opened; once the init has exec'd its own program, the same open works."""
    # Host uid 100000 must reach the rootfs: not under pytest's 0700 directory.
    top = Path(tempfile.mkdtemp(prefix="pyvmm-userns-"))
    os.chmod(top, 0o755)
    rootfs = top / "userfs"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    subprocess.run(["chown", "-R", "100000:100000", rootfs], check=True)
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    try:
        _in_user_namespace(Runtime(tmp_path / "state", tmp_path, rootfs), top, maps)
    finally:
        shutil.rmtree(top)


def _in_user_namespace(runtime: Runtime, top: Path, maps: list[dict]) -> None:
    with leaves_nothing(runtime) as rt:
        rt.tmp = top  # the bundle too
        b = rt.bundle(["sleep", "30"], linux__uidMappings=maps, linux__gidMappings=maps)
        config = json.loads((b / "config.json").read_text())
        config["linux"]["namespaces"].append({"type": "user"})
        config["mounts"] = [m for m in config["mounts"] if m["type"] != "sysfs"]
        (b / "config.json").write_text(json.dumps(config))
        rt.ok("create", "--bundle", b, "c")
        init = json.loads(rt.ok("state", "c"))["pid"]
        opened = "cat /proc/{}/exe >/dev/null && echo opened"
        r = _inside(init, opened.format(1))
        assert "Permission denied" in r.stderr and "opened" not in r.stdout, (r.stdout, r.stderr)

        freeze = _freezer(init)
        frozen = "FROZEN" if freeze.name == "freezer.state" else "1"
        freeze.write_text(frozen)
        command = [*rt.command, "--root", str(rt.root), "exec", "c", "true"]
        try:
            with subprocess.Popen(command, env=rt.env, stdin=subprocess.DEVNULL) as joining:
                deadline = time.monotonic() + 30
                others: list[str] = []
                while not others and time.monotonic() < deadline:
                    others = _inside(init, LIST_OTHERS).stdout.split()
                    time.sleep(0.1)
                assert others, "the exec'd process never showed in the container"
                seen = [_inside(init, opened.format(p)) for p in others]
                freeze.write_text("THAWED" if frozen == "FROZEN" else "0")
                assert joining.wait(30) == 0
        finally:
            freeze.write_text("THAWED" if frozen == "FROZEN" else "0")
        for r in seen:
            assert "opened" not in r.stdout, r.stdout
        assert any("Permission denied" in r.stderr for r in seen), [r.stderr for r in seen]

        rt.ok("start", "c")  # the init execs sleep: dumpable again, its exe the container's
        r = _inside(init, opened.format(1))
        assert r.stdout.strip() == "opened", r.stderr
