"""Docker's default hardening, in real containers: the seccomp filter, capabilities,
rlimits and the device cgroup, what lifts each, and the flags' bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from containertest import one_line_error

from vmm.container.linux import cgroups
from vmm.container.store.state import Store

V1 = cgroups.host_version() == "v1"
CAP_CHOWN, CAP_KILL, CAP_SYS_ADMIN, CAP_MKNOD = 0, 5, 21, 27

# keyctl(2) has no command-line tool in busybox: a static program that makes the
# raw call (join or create the session keyring) and prints how it went.
KEYCTL_C = r"""
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/keyctl.h>
int main(void)
{
    long r = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0);
    printf("keyctl %s\n", r < 0 ? strerror(errno) : "ok");
    return r < 0;
}
"""


@pytest.fixture(scope="module")
def keyctl(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build the static keyctl test program")
    out = tmp_path_factory.mktemp("keyctl") / "keyctl"
    src = out.with_suffix(".c")
    src.write_text(KEYCTL_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", out, src], check=True, capture_output=True)
    return out


def run(pyvmm, *args: str, script: str):
    return pyvmm("container", "run", "--rm", *args, "busybox", "sh", "-c", script)


def status(out: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)


USERNS_MOUNT = "mkdir -p /mnt; unshare -Urm sh -c 'mount -t tmpfs none /mnt && echo mounted'"


def test_default_profile_denies_new_user_namespaces(pyvmm):
    for cmd in ("unshare -U true", "unshare -Ur true", USERNS_MOUNT):
        r = run(pyvmm, script=cmd)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, (cmd, r.stderr)
        assert "mounted" not in r.stdout


def test_seccomp_unconfined_lifts_the_user_namespace_escape(pyvmm):
    """The issue's reproducer: without the filter, root in a new user namespace mounts."""
    r = run(
        pyvmm, "--security-opt", "seccomp=unconfined", script=f"unshare -U true && {USERNS_MOUNT}"
    )
    assert r.returncode == 0 and "mounted" in r.stdout, r.stderr


def test_mount_is_denied_by_default_and_allowed_with_cap_sys_admin(pyvmm):
    script = "mkdir -p /mnt; mount -t tmpfs none /mnt && echo mounted"
    r = run(pyvmm, script=script)
    assert r.returncode != 0 and "mounted" not in r.stdout
    # The default profile allows mount once the container has CAP_SYS_ADMIN, as Docker's.
    r = run(pyvmm, "--cap-add", "SYS_ADMIN", script=script)
    assert r.returncode == 0 and "mounted" in r.stdout, r.stderr


def test_keyctl_is_denied_by_default_and_allowed_unconfined(pyvmm, keyctl):
    mount = f"{keyctl}:/keyctl:ro"
    r = pyvmm("container", "run", "--rm", "-v", mount, "busybox", "/keyctl")
    assert r.returncode == 1 and r.stdout.strip() == "keyctl Operation not permitted"
    r = pyvmm("container", "run", "--rm", "-v", mount, "--security-opt", "seccomp=unconfined",
              "busybox", "/keyctl")  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "keyctl ok", r.stdout + r.stderr


def test_mknod_fails_without_cap_mknod(pyvmm):
    r = run(pyvmm, script="mknod /sda b 8 0")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


@pytest.mark.skipif(not V1, reason="device rules are enforced on cgroup v1 only")
def test_device_cgroup_stops_a_node_from_being_opened(pyvmm):
    # With CAP_MKNOD the node can be made (Docker's rules allow mknod), not opened:
    # /dev/kmsg's number, opened for writing and closed without a write (``true >``:
    # a failed redirection of a special builtin such as ``:`` would end the shell).
    script = (
        "mknod /kmsg c 1 11 && echo made; true >/kmsg && echo opened; true >/dev/null && echo null"
    )
    r = run(pyvmm, "--cap-add", "MKNOD", script=script)
    assert r.stdout.split() == ["made", "null"], r.stdout + r.stderr
    assert "Operation not permitted" in r.stderr
    r = run(pyvmm, "--privileged", script=script)
    assert r.stdout.split() == ["made", "opened", "null"], r.stdout + r.stderr
    assert one_line_error(r).startswith("pyvmm: warning: --privileged")


@pytest.mark.skipif(not V1, reason="cgroup v1's devices controller")
def test_device_rules_are_written_to_the_v1_devices_cgroup(pyvmm):
    cid = pyvmm.ok("container", "run", "-d", "busybox", "sleep", "30").strip()
    parent = Store(pyvmm.root).cgroup_parent
    allowed = Path(f"/sys/fs/cgroup/devices/{parent}/{cid}/devices.list").read_text().split("\n")
    assert "c 1:3 rwm" in allowed and "c 136:* rwm" in allowed and "b *:* m" in allowed
    assert "a *:* rwm" not in allowed
    pyvmm.ok("container", "rm", "-f", cid)


def test_cap_add_and_cap_drop_show_in_the_container_capabilities(pyvmm):
    caps = status(pyvmm.ok("container", "run", "--rm", "--cap-drop", "chown", "--cap-add",
                           "CAP_SYS_ADMIN", "busybox", "cat", "/proc/self/status"))  # fmt: skip
    eff = int(caps["CapEff"], 16)
    assert not eff & 1 << CAP_CHOWN and eff & 1 << CAP_SYS_ADMIN and eff & 1 << CAP_KILL
    assert int(caps["CapBnd"], 16) == eff and int(caps["CapPrm"], 16) == eff
    assert int(caps["CapInh"], 16) == 0 and int(caps["CapAmb"], 16) == 0
    caps = status(pyvmm.ok("container", "run", "--rm", "--cap-drop", "ALL", "--cap-add", "kill",
                           "busybox", "cat", "/proc/self/status"))  # fmt: skip
    assert int(caps["CapEff"], 16) == 1 << CAP_KILL == int(caps["CapBnd"], 16)


def test_privileged_gets_every_capability_this_host_allows(pyvmm):
    r = run(pyvmm, "--privileged", script="cat /proc/self/status")
    with open("/proc/self/status") as f:
        ours = int(status(f.read())["CapBnd"], 16)
    assert int(status(r.stdout)["CapEff"], 16) == ours


def test_ulimit_sets_the_container_rlimit(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "--ulimit", "nofile=100:200", "busybox",
                   "sh", "-c", "ulimit -n; ulimit -Hn")  # fmt: skip
    assert out.split() == ["100", "200"]
    out = pyvmm.ok("container", "run", "--rm", "--ulimit", "core=-1", "busybox",
                   "sh", "-c", "ulimit -c")  # fmt: skip
    assert out.strip() == "unlimited"


def test_custom_profile_actions_errno_and_argument_comparators(pyvmm, tmp_path):
    """A Docker profile of our own: everything allowed but openat with O_CREAT, which
    fails with EACCES; reading files is an openat too, without the bit, and works."""
    o_creat = 0o100
    creating = {"index": 2, "value": o_creat, "valueTwo": o_creat, "op": "SCMP_CMP_MASKED_EQ"}
    profile = {  # openat(dirfd, path, flags): flags is argument 2
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [creating]}
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    r = run(pyvmm, "--name", "custom", "--security-opt", f"seccomp={path}",
            script="head -c4 /etc/passwd; echo; touch /new && echo created")  # fmt: skip
    assert r.stdout.split() == ["root"], r.stdout + r.stderr
    assert "Permission denied" in r.stderr


def test_inspect_shows_capabilities_seccomp_mode_and_limits(pyvmm, tmp_path):
    cid = pyvmm.ok("container", "run", "-d", "--cap-drop", "ALL", "--cap-add", "kill",
                   "--ulimit", "nofile=64", "busybox", "sleep", "30").strip()  # fmt: skip
    info = pyvmm.inspect(cid)
    security = info["security"]
    assert security["seccomp"] == "default" and security["privileged"] is False
    assert security["capabilities"] == ["CAP_KILL"]
    assert security["running_capabilities"] == ["CAP_KILL"]
    assert security["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": 64}]
    assert {"allow": False, "type": "a", "major": None, "minor": None, "access": "rwm"} == (
        info["limits"]["devices"][0]
    )
    pyvmm.ok("container", "rm", "-f", cid)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    pyvmm.ok("container", "run", "--name", "c1", "--security-opt", f"seccomp={path}",
             "busybox", "true")  # fmt: skip
    assert pyvmm.inspect("c1")["security"]["seccomp"] == str(path)
    assert "seccomp_profile" not in pyvmm.inspect("c1")["security"]
    pyvmm.ok("container", "run", "--name", "c2", "--privileged", "busybox", "true")
    info = pyvmm.inspect("c2")
    assert info["security"]["privileged"] is True and info["limits"]["devices"] is None


BAD = [
    (["--cap-add", "NOT_A_CAP"], "unknown capability 'NOT_A_CAP'"),
    (["--cap-drop", "cap_bogus"], "unknown capability 'cap_bogus'"),
    (["--ulimit", "nofile"], "bad --ulimit 'nofile'"),
    (["--ulimit", "files=1"], "bad --ulimit 'files=1'"),
    (["--ulimit", "nofile=1:2:3"], "bad --ulimit 'nofile=1:2:3'"),
    (["--ulimit", "nofile=x"], "bad --ulimit 'nofile=x'"),
    (["--ulimit", "nofile=10:5"], "soft limit 10 above hard 5"),
    (["--security-opt", "apparmor=unconfined"], "unsupported --security-opt"),
    (["--security-opt", "seccomp=/nonexistent.json"], "No such file or directory"),
]
BAD_PROFILES = [
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown defaultAction 'SCMP_ACT_NOPE'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "X"}]}',
     "unknown action 'X' for read"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ISH"}]}]}',
     "unknown operator 'SCMP_CMP_ISH' for read"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], '
     '"action": "SCMP_ACT_ALLOW", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
     "argument index of read must be 0 to 5"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": "read"}', "syscalls must be a list"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["read"],'
     ' "action": "SCMP_ACT_ALLOW"}]}', "both name and names"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_hardening_flags_are_one_line_and_leave_nothing(pyvmm, flags, message):
    r = pyvmm("container", "run", "--rm", "--name", "bad", *flags, "busybox", "true")
    assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm("container", "inspect", "bad").returncode == 2


@pytest.mark.parametrize(("text", "message"), BAD_PROFILES)
def test_bad_seccomp_profiles_are_one_line_and_leave_nothing(pyvmm, tmp_path, text, message):
    path = tmp_path / "profile.json"
    path.write_text(text)
    r = pyvmm("container", "run", "--name", "bad", "--security-opt", f"seccomp={path}",
              "busybox", "true")  # fmt: skip
    assert r.returncode == 2 and message in one_line_error(r)
    assert pyvmm("container", "inspect", "bad").returncode == 2


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_profile_that_is_not_a_regular_file_is_refused_without_hanging(pyvmm, tmp_path, kind):
    path = tmp_path / "profile"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    r = pyvmm("container", "run", "--name", "bad", "--security-opt", f"seccomp={path}",
              "busybox", "true", timeout=20)  # fmt: skip
    assert r.returncode == 2 and "not a regular file" in one_line_error(r)
