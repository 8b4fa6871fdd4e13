"""pyvmm-runtime, the OCI core under runc's command line: the lifecycle and state
machine, each config.json field asserted from inside the container, and bad bundles
refused in one line with nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from containertest import (
    RUNTIME,
    Runtime,
    busybox_rootfs,
    leaves_nothing,
)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("oci") / "rootfs"
    dest.mkdir()
    busybox_rootfs(dest)
    return dest


@pytest.fixture
def rt(tmp_path, rootfs):
    """A Runtime; on the way out nothing may be left: state, cgroups, mounts."""
    with leaves_nothing(Runtime(tmp_path / "state", tmp_path, rootfs)) as runtime:
        yield runtime


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
    assert lines[0].startswith("pyvmm-runtime: ") and "Traceback" not in r.stderr
    return lines[0]


def _state(rt, cid) -> dict:
    return json.loads(rt.ok("state", cid))


def test_lifecycle_created_running_stopped_deleted(rt):
    b = rt.bundle(["sleep", "30"])
    rt.ok("create", "--bundle", b, "--pid-file", rt.tmp / "pid", "c1")
    state = _state(rt, "c1")
    assert state["status"] == "created" and state["id"] == "c1"
    assert state["bundle"] == str(b) and state["ociVersion"]
    assert int((rt.tmp / "pid").read_text()) == state["pid"] > 0
    with open(f"/proc/{state['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()  # not exec'd before start
    rt.ok("start", "c1")
    assert _state(rt, "c1")["status"] == "running"
    with open(f"/proc/{state['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    assert "cannot start" in _one_line(rt("start", "c1"))
    assert "not stopped" in _one_line(rt("delete", "c1"))
    rt.ok("kill", "c1", "KILL")
    deadline = time.monotonic() + 5
    while _state(rt, "c1")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(rt, "c1")["status"] == "stopped"
    assert "not running" in _one_line(rt("kill", "c1"))
    rt.ok("delete", "c1")
    assert "does not exist" in _one_line(rt("state", "c1"))


def test_delete_of_a_created_container_kills_its_init(rt):
    b = rt.bundle(["true"])
    rt.ok("create", "--bundle", b, "c2")
    pid = _state(rt, "c2")["pid"]
    rt.ok("delete", "c2")
    assert (
        not os.path.exists(f"/proc/{pid}/cmdline")
        or b"" == Path(f"/proc/{pid}/cmdline").read_bytes()
    )


def test_run_returns_the_exit_status_and_output(rt):
    r = rt.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_exec_pause_resume_ps_update_list(rt):
    b = rt.bundle(["sleep", "30"], linux__resources={"pids": {"limit": 50}})
    rt.ok("run", "-d", "--bundle", b, "c3")
    assert rt.ok("exec", "c3", "sh", "-c", "echo $$; cat /proc/1/cmdline").startswith("")
    out = rt.ok("exec", "c3", "cat", "/proc/1/cmdline")
    assert out.split("\0")[0] == "sleep"
    pids = json.loads(rt.ok("ps", "--format", "json", "c3"))
    assert _state(rt, "c3")["pid"] in pids
    rt.ok("pause", "c3")
    assert _state(rt, "c3")["status"] == "paused"
    rt.ok("resume", "c3")
    assert _state(rt, "c3")["status"] == "running"
    rt.ok("update", "--pids-limit", "77", "c3")
    memory_cg = Path(f"/sys/fs/cgroup/pids/{rt.cgroup}/b/pids.max")
    if memory_cg.exists():
        assert memory_cg.read_text().strip() == "77"
    listing = json.loads(rt.ok("list", "--format", "json"))
    assert [c["id"] for c in listing] == ["c3"]
    rt.ok("delete", "--force", "c3")


def test_exec_flags_change_the_containers_process_as_runcs_do(rt):
    """runc exec's flags start from the container's process: --cap adds to its sets,
    --no-new-privs=false clears what config.json set, -g adds groups; the umask is the
    caller's, not config.json's (runc 1.1.5 on the same bundle prints the same)."""
    b = rt.bundle(["sleep", "30"], process__user={"uid": 0, "gid": 0, "umask": 0o027})
    rt.ok("run", "-d", "--bundle", b, "x1")
    status = "grep -E 'CapEff|NoNewPrivs' /proc/self/status | cut -f2; id; umask; echo $A"
    out = rt.ok("exec", "--cap", "CAP_CHOWN", "--no-new-privs=false", "-u", "1000:1000",
                "-g", "5", "-e", "A=b", "x1", "sh", "-c", status).split("\n")  # fmt: skip
    kill_chown_etc = (1 << 0) | (1 << 5) | (1 << 10) | (1 << 29)  # CHOWN KILL NET_BIND AUDIT
    assert out[:2] == ["0000000000000000", "0"]  # uid 1000: no effective capabilities
    caller = os.umask(0)
    os.umask(caller)
    assert out[2:5] == ["uid=1000 gid=1000 groups=5", f"{caller:04o}", "b"]
    out = rt.ok("exec", "--cap", "CAP_CHOWN", "x1", "sh", "-c", status).split("\n")
    assert out[:2] == [f"{kill_chown_etc:016x}", "1"]
    rt.ok("delete", "--force", "x1")


def test_hooks_run_at_their_points_with_the_state_on_stdin(rt):
    log = rt.tmp / "hooks.log"

    def hook(point: str) -> dict:
        script = f"cat >> {log}; echo >> {log}; echo {point} >> {log}"
        return {"path": "/bin/sh", "args": ["sh", "-c", script]}

    hooks = {p: [hook(p)] for p in ("prestart", "createRuntime", "poststart", "poststop")}
    b = rt.bundle(["sleep", "0.5"], hooks=hooks)
    rt.ok("run", "--bundle", b, "h1")
    lines = log.read_text().splitlines()
    points = lines[1::2]
    assert points == ["prestart", "createRuntime", "poststart", "poststop"]
    states = [json.loads(x) for x in lines[0::2]]
    assert all(s["id"] == "h1" and s["pid"] > 0 for s in states[:3])
    assert states[3]["status"] == "stopped"


def test_failing_prestart_hook_fails_create_and_leaves_nothing(rt):
    hooks = {"prestart": [{"path": "/bin/false"}]}
    b = rt.bundle(["true"], hooks=hooks)
    assert "prestart hook /bin/false failed" in _one_line(rt("create", "--bundle", b, "h2"))


def test_process_fields_seen_from_inside(rt):
    script = ("hostname; cat /proc/sys/kernel/domainname; pwd; echo $GREETING; id; umask; "
              "grep -E 'CapEff|NoNewPrivs' /proc/self/status; ulimit -n; "
              "cat /proc/self/oom_score_adj")  # fmt: skip
    r = rt.run(
        ["sh", "-c", script],
        hostname="box", domainname="example.org",
        process__cwd="/tmp", process__env=["PATH=/bin", "GREETING=hi"],
        process__user={"uid": 1000, "gid": 1001, "additionalGids": [1002], "umask": 0o027},
        process__capabilities={s: ["CAP_KILL"] for s in ("bounding", "effective", "permitted",
                                                          "inheritable", "ambient")},
        process__rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}],
        process__noNewPrivileges=True, process__oomScoreAdj=500,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["box", "example.org", "/tmp", "hi"]
    assert lines[4] == "uid=1000 gid=1001 groups=1002"
    assert lines[5] == "0027"
    assert lines[6].split()[1] == f"{1 << 5:016x}"  # CAP_KILL only
    assert lines[7].split()[1] == "1"
    assert lines[8:] == ["123", "500"]


def test_ambient_capabilities_are_raised_where_the_kernel_allows_as_runc_does(rt):
    """Ambient needs the capability inheritable too; one that is not (``runc spec``'s
    config has no inheritable set at all) is left out, not an error."""
    caps = {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL", "CAP_CHOWN"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_CHOWN"],
            "ambient": ["CAP_KILL", "CAP_CHOWN"]}  # fmt: skip
    r = rt.run(["grep", "-E", "CapInh|CapAmb", "/proc/self/status"], process__capabilities=caps)
    assert r.returncode == 0, r.stderr
    assert [line.split()[1] for line in r.stdout.splitlines()] == [f"{1:016x}", f"{1:016x}"]


def test_mounts_masked_readonly_paths_and_readonly_root(rt, tmp_path):
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "f").write_text("from host\n")
    mounts = json.loads(json.dumps(rt_default_mounts()))
    mounts += [
        {"destination": "/data", "type": "bind", "source": str(host_dir),
         "options": ["rbind", "ro"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nodev", "size=1m", "rprivate"]},
    ]  # fmt: skip
    script = ("cat /data/f; touch /data/x 2>/dev/null || echo data-ro; "
              "touch /scratch/y && echo scratch-rw; "
              "touch /z 2>/dev/null || echo root-ro; cat /proc/kcore 2>/dev/null | wc -c; "
              "echo x > /proc/sys/kernel/domainname 2>/dev/null || echo procsys-ro; "
              "grep ' /scratch ' /proc/self/mountinfo")  # fmt: skip
    r = rt.run(["sh", "-c", script], mounts=mounts, root__readonly=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:6] == ["from host", "data-ro", "scratch-rw", "root-ro", "0", "procsys-ro"]
    assert "size=1024k" in out[6] and "nodev" in out[6]


def rt_default_mounts() -> list[dict]:
    from vmm.container.oci.spec import default

    return default()["mounts"]


def test_user_namespace_maps_root_to_an_unprivileged_host_uid(rt, tmp_path):
    # Host uid 100000 must reach the rootfs: not under pytest's 0700 directory.
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="pyvmm-userns-"))
    os.chmod(top, 0o755)
    rt.tmp = top  # the bundle too
    try:
        _user_namespace(rt, top)
    finally:
        shutil.rmtree(top)


def _user_namespace(rt, top: Path) -> None:
    rootfs = top / "userfs"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    subprocess.run(["chown", "-R", "100000:100000", rootfs], check=True)
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b = rt.bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 2"], name="u1",
                  linux__uidMappings=maps, linux__gidMappings=maps)  # fmt: skip
    os.unlink(b / "rootfs")
    os.symlink(rootfs, b / "rootfs")
    config = json.loads((b / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "user"})
    config["mounts"] = [m for m in config["mounts"] if m["type"] not in ("sysfs",)]
    (b / "config.json").write_text(json.dumps(config))
    rt.ok("run", "-d", "--bundle", b, "u1")
    pid = _state(rt, "u1")["pid"]
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["100000"] * 4  # root inside is host uid 100000
    rt.ok("delete", "--force", "u1")


def test_namespace_path_joins_an_existing_network_namespace(rt):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        time.sleep(0.3)
        path = f"/proc/{holder.pid}/ns/net"
        namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
        namespaces.append({"type": "network", "path": path})
        r = rt.run(["readlink", "/proc/self/ns/net"], linux__namespaces=namespaces)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == os.readlink(path) != os.readlink("/proc/self/ns/net")
    finally:
        holder.kill()
        holder.wait()


def test_sysctl_cgroups_and_seccomp(rt):
    deny_mkdir = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [deny_mkdir]}
    cgroup = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}
    mounts = [*rt_default_mounts(), {**cgroup, "options": ["ro"]}]
    script = ("cat /proc/sys/net/ipv4/ip_forward; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; "
              "mkdir /tmp/d 2>&1; cat /sys/fs/cgroup/devices/devices.list; "
              "awk '$5 == \"/\"' /proc/self/mountinfo; "
              "grep :memory: /proc/self/cgroup")  # fmt: skip
    r = rt.run(["sh", "-c", script], linux__sysctl={"net.ipv4.ip_forward": "1"},
               linux__resources={"memory": {"limit": 64 << 20}, "pids": {"limit": 20},
                                 "cpu": {"quota": 50000, "period": 100000},
                                 "devices": [{"allow": False, "access": "rwm"}]},
               linux__seccomp=seccomp, linux__rootfsPropagation="unbindable",
               linux__namespaces=[{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                         "mount", "cgroup")],
               mounts=mounts, root__readonly=False)  # fmt: skip
    out = r.stdout.splitlines()
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("the cgroup files read here are cgroup v1's")
    assert out[:4] == ["1", str(64 << 20), "20", "50000"], (r.stdout, r.stderr)
    assert "Operation not permitted" in out[4]
    assert "c 1:3 rwm" in out[5:] and "a *:* rwm" not in out  # deny all, then the defaults
    assert "unbindable" in out[-2]
    assert out[-1].endswith(":memory:/")  # its own cgroup is the root of its namespace


def test_zeros_docker_writes_read_as_unset_as_runc_does(rt):
    """Docker writes every limit it was not asked for as 0 (``blockIO.weight``,
    ``cpu.shares``...): runc leaves those at the kernel's default, and so must pyvmm;
    a field pyvmm does not implement is still refused once it says something."""
    zeros = {"memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0,
                        "disableOOMKiller": False},
             "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                     "realtimePeriod": 0, "cpus": "", "mems": ""},
             "pids": {"limit": 0}, "blockIO": {"weight": 0, "leafWeight": 0,
                                                "weightDevice": [], "throttleReadBpsDevice": []},
             "hugepageLimits": []}  # fmt: skip
    script = "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; echo ran"
    cgroup = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}
    r = rt.run(["sh", "-c", script], linux__resources=zeros,
               mounts=[*rt_default_mounts(), cgroup])  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "max\nran\n"), r.stderr
    weight = {**zeros, "blockIO": {"weight": 500}}
    r = rt("run", "--bundle", rt.bundle(["true"], linux__resources=weight), "w")
    assert "linux.resources.blockIO is not supported" in _one_line(r)


def test_tmpcopyup_fills_a_tmpfs_with_what_the_image_has_there(rt):
    """runc's ``tmpcopyup``, which Podman sends for --tmpfs and --read-only: the new
    tmpfs holds a copy of the image's directory (links as links, modes kept), and the
    image's own stays untouched underneath; without it, the tmpfs starts empty. And
    ``nosymfollow`` (Linux 5.10), which features lists too."""
    tmpfs = {"type": "tmpfs", "source": "tmpfs"}
    extra = [{**tmpfs, "destination": "/etc", "options": ["tmpcopyup", "nosuid", "mode=755"]},
             {**tmpfs, "destination": "/bin", "options": ["tmpcopyup", "ro"]},
             {**tmpfs, "destination": "/var", "options": ["nosuid", "nosymfollow"]}]  # fmt: skip
    script = ("cat /etc/passwd; echo new > /etc/passwd && cat /etc/passwd; readlink /bin/sh; "
              "touch /bin/x 2>/dev/null || echo bin read-only; ls -A /var | wc -l; "
              "ln -s /etc/passwd /var/l && cat /var/l 2>/dev/null || echo not followed; "
              "awk '$2 ~ /^\\/(etc|bin)$/ {print $2, $3}' /proc/self/mounts")  # fmt: skip
    r = rt.run(["sh", "-c", script], mounts=[*rt_default_mounts(), *extra])
    assert r.stdout.splitlines() == [
        "root:x:0:0:root:/root:/bin/sh", "new", "busybox", "bin read-only", "0",
        "not followed", "/etc tmpfs", "/bin tmpfs"], r.stderr  # fmt: skip
    assert (rt.rootfs / "etc" / "passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert {"tmpcopyup", "nosymfollow"} <= set(json.loads(rt.ok("features"))["mountOptions"])


def test_the_init_joins_every_cgroup_hierarchy_and_is_accounted_there(rt):
    """As runc: the container is in its own cgroup of every hierarchy the host has
    (v1's controllers, named ones such as name=systemd, a hybrid host's unified one),
    so what an engine reads there (cpuacct for ``podman stats``) is the container's."""
    b = rt.bundle(["sh", "-c", "while :; do :; done"])
    rt.ok("run", "-d", "--bundle", b, "busy")
    pid = _state(rt, "busy")["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.endswith(f":/{rt.cgroup}/b") for line in lines), lines
    hierarchies = {line.split(":")[1] for line in lines}
    if not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        rt.ok("delete", "--force", "busy")
        pytest.skip("cpuacct is cgroup v1's")
    assert {"cpuacct", "blkio", "cpuset", "memory"} <= hierarchies
    usage = Path(f"/sys/fs/cgroup/cpuacct/{rt.cgroup}/b/cpuacct.usage")
    first = int(usage.read_text())
    time.sleep(0.5)
    assert int(usage.read_text()) > first
    event = json.loads(rt.ok("events", "--stats", "busy"))  # runc's one object
    assert (event["type"], event["id"]) == ("stats", "busy")
    assert event["data"]["cpu"]["usage"]["total"] > first and event["data"]["pids"]["current"] == 1
    assert event["data"]["memory"]["usage"]["usage"] > 0
    rt.ok("delete", "--force", "busy")


def test_terminal_goes_to_the_console_socket(rt, socket_dir):
    path = str(socket_dir / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    b = rt.bundle(["sh", "-c", "tty; echo on-the-tty"], process__terminal=True)
    proc = subprocess.Popen([*RUNTIME, "--root", str(rt.root), "run", "--bundle", b,
                             "--console-socket", path, "t1"], stderr=subprocess.PIPE)  # fmt: skip
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    out = b""
    while True:
        try:
            data = os.read(fds[0], 1024)
        except OSError:
            break
        if not data:
            break
        out += data
    assert proc.wait(10) == 0, proc.stderr.read()
    os.close(fds[0])
    conn.close()
    server.close()
    assert b"/dev/pts/0" in out and b"on-the-tty" in out


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no-config", "config.json: no such file"),
        ("bad-json", "not valid JSON"),
        ("rootfs-file", "is not a directory"),
        ("unknown-ns", "unknown namespace type 'bogus'"),
        ("map-no-userns", "need a user namespace"),
        ("relative-mount", "must be an absolute path"),
        ("relative-cwd", "process.cwd must be an absolute path"),
        ("bind-over-proc", "mount on /proc: only a proc mount may go on /proc"),
        ("under-proc", "mount on /proc/sys/x: nothing may be mounted under /proc"),
        ("unsupported", "linux.intelRdt is not supported"),
        ("missing-command", 'exec: "nosuchcmd": executable file not found'),
        # Go's words, as runc says them: Podman gives 126 for these, 127 for the above
        ("not-executable", 'exec: "/etc/passwd": permission denied'),
        ("missing-path", 'exec: "/no/such": stat /no/such: no such file or directory'),
        ("rlimit-too-high", "cannot set RLIMIT_NOFILE"),
    ],
)
def test_bad_bundles_fail_in_one_line_and_leave_nothing(rt, case, expected):
    command = {"missing-command": "nosuchcmd", "not-executable": "/etc/passwd",
               "missing-path": "/no/such"}.get(case, "true")  # fmt: skip
    b = rt.bundle([command])
    config = json.loads((b / "config.json").read_text())
    if case == "no-config":
        (b / "config.json").unlink()
    elif case == "bad-json":
        (b / "config.json").write_text("{not json")
    else:
        if case == "rootfs-file":
            os.unlink(b / "rootfs")
            (b / "rootfs").write_text("")
        elif case == "unknown-ns":
            config["linux"]["namespaces"].append({"type": "bogus"})
        elif case == "map-no-userns":
            config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
        elif case == "relative-mount":
            config["mounts"].append({"destination": "data", "type": "tmpfs", "source": "t"})
        elif case == "relative-cwd":
            config["process"]["cwd"] = "tmp"
        elif case in ("bind-over-proc", "under-proc"):
            where = "/proc" if case == "bind-over-proc" else "/proc/sys/x"
            config["mounts"].append({"destination": where, "type": "bind",
                                     "source": str(rt.tmp), "options": ["rbind"]})  # fmt: skip
        elif case == "unsupported":
            config["linux"]["intelRdt"] = {"closID": "x"}
        elif case == "rlimit-too-high":
            hard = int(Path("/proc/sys/fs/nr_open").read_text()) + 1  # past what root may set
            config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard, "hard": hard}]
        (b / "config.json").write_text(json.dumps(config))
    r = rt("create", "--bundle", b, "bad")
    assert expected in _one_line(r)
    assert rt.ok("list", "-q") == ""


def test_cli_errors_are_one_line_status_1_and_logged_as_json(rt):
    assert "required: id" in _one_line(rt("create"))
    assert "--systemd-cgroup is not supported" in _one_line(rt("--systemd-cgroup", "list"))
    log = rt.tmp / "log.json"
    assert "does not exist" in _one_line(rt("--log", log, "--log-format", "json", "state", "x"))
    record = json.loads(log.read_text())
    assert record["level"] == "error" and record["msg"] == "container x does not exist"
    # runc's formats: logrus text in --log; JSON on stderr when asked and no --log
    assert "does not exist" in _one_line(rt("--log", rt.tmp / "log.txt", "state", "x"))
    assert re.fullmatch(r'time="[-0-9T:]+Z" level=error msg="container x does not exist"\n',
                        (rt.tmp / "log.txt").read_text())  # fmt: skip
    r = rt("--log-format", "json", "state", "x")
    assert r.returncode == 1 and json.loads(r.stderr)["msg"] == "container x does not exist"
    b = rt.bundle(["true"])
    assert "exists" in _one_line(rt("spec", "--bundle", b))


def test_features_and_kill_signal_names(rt):
    features = json.loads(rt.ok("features"))
    assert "createRuntime" in features["hooks"] and "user" in features["linux"]["namespaces"]
    seccomp = features["linux"]["seccomp"]
    assert "SCMP_ACT_ERRNO" in seccomp["actions"] and "SCMP_CMP_MASKED_EQ" in seccomp["operators"]
    assert "SCMP_ARCH_X86_64" in seccomp["archs"]
    # One spec version everywhere: features, --version, the config `spec` writes, state.
    version = features["ociVersionMax"]
    assert rt.ok("--version").splitlines()[1] == f"spec: {version}"
    assert rt.ok("list", "--format", "json") == "null\n"  # as runc's Go: a nil slice
    b = rt.bundle(["sh", "-c", "trap 'exit 0' USR1; sleep 30 & wait"])  # ends on USR1 only
    rt.ok("run", "-d", "--bundle", b, "k1")
    assert json.loads((b / "config.json").read_text())["ociVersion"] == version
    assert _state(rt, "k1")["ociVersion"] == version
    assert [c["id"] for c in json.loads(rt.ok("list", "--format", "json"))] == ["k1"]
    time.sleep(0.3)
    assert "unknown signal" in _one_line(rt("kill", "k1", "NOSUCHSIG"))
    rt.ok("kill", "k1", "sigusr1")
    deadline = time.monotonic() + 5
    while _state(rt, "k1")["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _state(rt, "k1")["status"] == "stopped"
    rt.ok("delete", "k1")


def test_pyvmm_container_writes_a_bundle_the_core_reads(pyvmm, root):
    """``pyvmm container`` is a layer over the core: its container directory is an
    OCI bundle whose config.json says what the flags and the image said."""
    from vmm.container.oci import spec

    pyvmm.ok("container", "run", "--name", "bundled", "--hostname", "h1", "--memory", "32M",
             "-v", "vol1:/data:ro", "busybox", "sh", "-c", "hostname")  # fmt: skip
    cid = pyvmm.inspect("bundled")["id"]
    s = spec.load(str(root / "containers" / cid))
    assert s.process.args == ["sh", "-c", "hostname"] and s.hostname == "h1"
    assert s.root == str(root / "containers" / cid / "merged")
    assert s.resources["memory"]["limit"] == 32 << 20
    data = next(m for m in s.mounts if m.destination == "/data")
    assert data.type == "bind" and "ro" in data.options and data.source.endswith("vol1/_data")
    assert s.seccomp is not None and s.process.no_new_privileges
    pyvmm.ok("container", "rm", "bundled")


def test_failing_poststart_and_poststop_hooks_warn_and_the_rest_run(rt):
    log = rt.tmp / "after.log"
    ok = {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {log}"]}
    hooks = {p: [{"path": "/bin/false"}, ok] for p in ("poststart", "poststop")}
    r = rt("run", "--bundle", rt.bundle(["true"], hooks=hooks), "w1")
    assert r.returncode == 0
    assert log.read_text() == "ran\nran\n"
    assert r.stderr.count("pyvmm-runtime: warning: ") == 2 and "hook /bin/false" in r.stderr


def test_v2_cgroup_freezes_lists_and_joins_an_existing_cgroup():
    """The interface the runtime's pause, ps and cgroupsPath use, on cgroup v2 (the
    host's, or the controller-less one a hybrid host mounts at /sys/fs/cgroup/unified)."""
    from vmm.container.linux.cgroups import CgroupV2, Limits

    root = next((p for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
                 if (p / "cgroup.controllers").exists()), None)  # fmt: skip
    if root is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    parent = f"pyvmm-test-{os.urandom(4).hex()}/nested"
    cg = CgroupV2("c1", parent, root, oci=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        cg.create(Limits())
        CgroupV2("c1", parent, root, oci=True).create(Limits())  # joins, as runc does
        cg.add(sleeper.pid)
        assert cg.pids() == [sleeper.pid] and cg.host_paths() == {"": cg.path}
        stats = cg.stats()  # cpu.stat is always there; without controllers little else
        assert stats["cpu"]["usage"]["total"] >= 0 and set(stats) == {"cpu", "memory", "pids"}
        cg.freeze(True)
        assert cg.frozen()  # the kernel's cgroup.events says so
        cg.freeze(False)
        assert not cg.frozen()
    finally:
        cg.remove()
        sleeper.kill()
        sleeper.wait()
        with contextlib.suppress(OSError):
            os.rmdir(root / parent.split("/")[0])
    assert not (root / parent.split("/")[0]).exists()


def test_preserve_fds_and_no_pivot(rt):
    b = rt.bundle(["sh", "-c", "ls /proc/self/fd | wc -l"])
    argv = " ".join([*RUNTIME[:2], repr(RUNTIME[2]), "--root", str(rt.root)])

    def run(flags: str) -> list[int]:
        script = f"exec 3</dev/null; {argv} run {flags} --bundle {b} p1"
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                           env=rt.env, timeout=30)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return [int(n) for n in r.stdout.split()]

    assert run("--preserve-fds 1") == [run("")[0] + 1]  # fd 3 passed through
    assert run("--no-pivot") == run("")  # chroot after a move of the rootfs over /
