"""Isolation: what a container's process can see of the host."""

from __future__ import annotations

import os
import socket
import subprocess

from containertest import PYVMM


def test_command_is_pid_1_and_sees_no_host_process(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "busybox", "sh", "-c", "echo $$; ls /proc")
    lines = out.split()
    assert lines[0] == "1"
    pids = sorted(int(p) for p in lines[1:] if p.isdigit())
    assert pids[0] == 1 and len(pids) <= 3  # sh, ls, and nothing from the host


def test_hostname_option_sets_the_container_hostname_only(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "--hostname", "box1", "busybox", "hostname")
    assert out.strip() == "box1"
    assert socket.gethostname() != "box1"


def test_overlay_root_is_mounted_only_inside_the_container(pyvmm):
    cid = pyvmm.ok("container", "run", "-d", "busybox", "sleep", "30").strip()
    inside = pyvmm.ok("container", "run", "--rm", "busybox", "cat", "/proc/self/mountinfo")
    assert " / / " in inside and "overlay" in inside
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()
    pyvmm.ok("container", "rm", "-f", cid)


def test_network_namespace_has_only_loopback_and_it_is_up(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "busybox", "sh", "-c", "cat /proc/net/dev; ip link")
    devices = [line.split(":")[0].strip() for line in out.splitlines() if ":" in line]
    assert "lo" in devices and "eth0" not in devices
    assert "LOOPBACK,UP" in out


def test_capabilities_are_reduced_with_no_inheritable_and_no_new_privs(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "busybox", "cat", "/proc/self/status")
    status = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
    bounding = int(status["CapBnd"], 16)
    assert bounding & (1 << 21) == 0  # CAP_SYS_ADMIN is gone
    assert bounding & (1 << 27) == 0  # CAP_MKNOD too: nothing filters device nodes
    assert bounding & (1 << 0)  # CAP_CHOWN stays
    assert int(status["CapEff"], 16) == bounding
    assert status["NoNewPrivs"].strip() == "1"


def test_container_cannot_create_a_device_node_for_a_host_disk(pyvmm):
    r = pyvmm("container", "run", "--rm", "busybox", "mknod", "/sda", "b", "8", "0")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_only_stdio_file_descriptors_pass_into_the_container(pyvmm, root):
    r, w = os.pipe()
    try:
        out = subprocess.run(
            [*PYVMM, "container", "run", "--rm", "busybox", "ls", "/proc/self/fd"],
            pass_fds=(r, w), capture_output=True, text=True, check=True,
            env={**os.environ, "PYVMM_ROOT": str(root)},
        ).stdout  # fmt: skip
    finally:
        os.close(r)
        os.close(w)
    assert sorted(out.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory


def test_sensitive_proc_paths_are_masked_and_sys_is_read_only(pyvmm):
    script = (
        "wc -c < /proc/kcore 2>/dev/null || echo 0; "
        "echo 1 > /proc/sys/kernel/domainname && echo proc-sys-writable; "
        "touch /sys/x 2>/dev/null && echo sys-writable; ls /dev"
    )
    r = pyvmm("container", "run", "--rm", "busybox", "sh", "-c", script)
    assert "proc-sys-writable" not in r.stdout and "sys-writable" not in r.stdout
    assert r.stdout.split()[0] == "0"
    devices = set(r.stdout.split()[1:])
    assert {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"} <= devices
    assert not devices & {"sda", "vda", "kvm", "mem", "kmsg"}
