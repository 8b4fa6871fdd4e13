"""A VM's state as a thing to hold: the control socket, pause, snapshot and restore.

Real guests throughout: the tiny kernel running the counter (guest/demo/counter.c), driven
through ``pyvmm ctl`` as a user would, and restored by a new ``pyvmm boot --restore``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from guestproc import COUNT, GuestProcess
from nettest import needs_netns
from vmtest import assert_one_line_error, needs_kvm, run_pyvmm

pytestmark = needs_kvm
BANNER = b"pyvmm tiny kernel"


def counter_args(guest_build, sock, *extra: str, limit: int | None = None) -> list[str]:
    cmdline = "console=ttyS0" + (f" -- {limit}" if limit else "")
    return ["--program", str(guest_build / "counter"), "--cmdline", cmdline,
            "--api-sock", str(sock), *extra]  # fmt: skip


def ctl(sock, *args: str):
    return run_pyvmm("ctl", str(sock), *args, timeout=60)


def ctl_ok(sock, *args: str) -> dict[str, str]:
    proc = ctl(sock, *args)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines())


def consecutive(counts: list[int]) -> bool:
    return counts == list(range(counts[0], counts[0] + len(counts)))


def take_snapshot(guest_build, tmp_path, limit: int | None = 40, after: int = 5):
    """A counter guest snapshotted while paused after "count AFTER"; returns the
    directory and the output the original printed (ended with Ctrl-C while paused)."""
    sock, snap = tmp_path / "api.sock", tmp_path / "snap"
    with GuestProcess(*counter_args(guest_build, sock, limit=limit)) as guest:
        guest.wait_for(f"count {after}\n".encode())
        ctl_ok(sock, "pause")
        info = ctl_ok(sock, "snapshot", str(snap))
        assert info["directory"] == str(snap)
        assert ctl_ok(sock, "stats")["state"] == "paused"  # it stays as it was
        assert guest.interrupt() == 130
        assert not sock.exists()  # the socket goes with the VM
        return snap, guest.output()


def test_paused_guest_uses_no_cpu_and_resumes(guest_build, tmp_path):
    sock = tmp_path / "api.sock"
    with GuestProcess(*counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 3\n")
        assert ctl_ok(sock, "pause") == {"state": "paused"}
        time.sleep(0.2)  # the line being printed when it stopped, if any, is flushed
        ticks, printed = guest.cpu_ticks(), guest.counts()
        time.sleep(1.0)
        assert guest.cpu_ticks() - ticks <= 2, "a paused guest kept a CPU busy"
        assert guest.counts() == printed
        stats = ctl_ok(sock, "stats")
        assert stats["state"] == "paused" and stats["vcpus"] == "1"
        assert int(stats["memory_touched_bytes"]) > 0
        ctl_ok(sock, "resume")
        guest.wait_for(f"count {printed[-1] + 3}\n".encode())
        assert guest.cpu_ticks() - ticks > 2
        assert consecutive(guest.counts())


def test_a_pause_straight_after_a_resume_holds(guest_build, tmp_path):
    """Resume and pause back to back on one connection: the pause may come before the
    vCPU has left the gate, and must keep it there (it used to answer "paused" and let
    the guest run on)."""
    sock = tmp_path / "api.sock"
    with GuestProcess(*counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 2\n")
        with socket.socket(socket.AF_UNIX) as s, s.makefile("rwb") as f:
            s.connect(str(sock))

            def op(name: str) -> None:
                f.write(json.dumps({"op": name}).encode() + b"\n")
                f.flush()
                assert json.loads(f.readline())["ok"]

            op("pause")
            for _ in range(20):
                op("resume")
                op("pause")
        time.sleep(0.3)
        printed = guest.counts()
        time.sleep(1.0)
        assert guest.counts() == printed, "the guest ran on after a pause"
        assert ctl_ok(sock, "stats")["state"] == "paused"


def test_restored_guest_counts_on_without_a_reset(guest_build, tmp_path):
    snap, before = take_snapshot(guest_build, tmp_path)
    proc = run_pyvmm("boot", "--restore", str(snap), timeout=120)
    assert proc.returncode == 0, proc.stderr  # the counter reached 40 and exited
    assert BANNER not in proc.stdout.encode()  # no boot: it went on from where it was
    counts = [int(n) for n in proc.stdout.split("count ")[1:] if n.strip().isdigit()]
    assert counts and counts[-1] == 40 and counts[0] > 5
    # The original and the restored output together: 1 to 40, each once (a line cut
    # by the pause is finished by the restored guest).
    joined = before + proc.stdout.encode()
    assert [int(n) for n in COUNT.findall(joined)] == list(range(1, 41))


def test_snapshot_holds_only_touched_memory_and_a_typed_manifest(guest_build, tmp_path):
    snap, _ = take_snapshot(guest_build, tmp_path)
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["format"] == "pyvmm-snapshot" and manifest["version"] == 1
    memory = snap / "memory"
    assert memory.stat().st_size == 64 << 20
    assert memory.stat().st_blocks * 512 < 4 << 20  # sparse: holes where nothing was written
    (vcpu,) = manifest["vcpus"]
    assert {"sregs", "debugregs", "mp_state", "events"} <= set(vcpu["parts"])
    assert {"xsave", "fpu"} & set(vcpu["parts"])
    assert "0x10" in vcpu["msrs"]  # IA32_TIME_STAMP_COUNTER, from KVM's list
    assert vcpu["regs"]["rip"] > 0


def test_a_register_changed_in_the_manifest_reaches_the_guest(guest_build, tmp_path):
    """The lab's experiment: the counter's n lives in a register; add 1000 to it in the
    manifest, and the restored guest counts on from there. Only a snapshot of the
    counter itself, in ring 3, will do: one caught in the kernel's write (slow, emulated
    under PVM) has the kernel's registers, where another value may equal n."""
    for _ in range(10):
        snap, before = take_snapshot(guest_build, tmp_path, limit=None, after=25)
        if privilege_level(snap) == 3:
            break
        shutil.rmtree(snap)
    else:
        pytest.fail("none of 10 snapshots caught the counter in ring 3")
    manifest = json.loads((snap / "manifest.json").read_text())
    printed = [int(n) for n in COUNT.findall(before)]
    regs = manifest["vcpus"][0]["regs"]
    # n is the register holding the last count printed (or, past n++, the next one).
    (holder,) = [r for r, v in regs.items() if v in (printed[-1], printed[-1] + 1)]
    regs[holder] += 1000
    (snap / "manifest.json").write_text(json.dumps(manifest))
    with GuestProcess("--restore", str(snap)) as restored:
        restored.wait_for(f"count {printed[-1] + 1003}\n".encode())
        after = restored.counts()
    assert after[0] in (printed[-1] + 1001, printed[-1] + 1000) and consecutive(after)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("version", "format version 99; this pyvmm reads version 1"),
        ("truncate-memory", "memory is 4096 bytes, the guest had"),
        ("tamper-state", "does not match the manifest's digest"),
        ("truncate-state", "truncated?"),
        ("regs-type", "field 'vcpus'[0] field 'regs'.rip: expected an integer"),
        ("layout", "not pyvmm's layout"),
        ("unknown-field", "unknown field 'extra'"),
        ("manifest-cut", "is not JSON"),
        ("no-memory", "has no memory"),
        ("link-memory", "cannot open the snapshot's memory"),
        ("sizes", "sregs is 8 bytes, this pyvmm's KVM struct is"),
        ("vcpu-numbers", "the vCPUs are not numbered 0, 1, ... in order"),
    ],
)
def test_damaged_snapshot_is_refused_in_one_line(guest_build, tmp_path, damage, message):
    snap, _ = take_snapshot(guest_build, tmp_path)
    path = snap / "manifest.json"
    manifest = json.loads(path.read_text())
    state = snap / "state.bin"
    if damage == "version":
        manifest["version"] = 99
    elif damage == "truncate-memory":
        os.truncate(snap / "memory", 4096)
    elif damage == "tamper-state":
        data = bytearray(state.read_bytes())
        data[100] ^= 1
        state.write_bytes(bytes(data))
    elif damage == "truncate-state":
        os.truncate(state, 100)
    elif damage == "regs-type":
        manifest["vcpus"][0]["regs"]["rip"] = "0x1000"
    elif damage == "layout":
        manifest["memory"][0]["gpa"] = 4096
    elif damage == "vcpu-numbers":  # vCPU 0 twice: which would be the boot CPU?
        manifest["vcpus"].append(manifest["vcpus"][0])
    elif damage == "unknown-field":
        manifest["extra"] = 1
    elif damage == "no-memory":
        (snap / "memory").unlink()
    elif damage == "link-memory":
        (snap / "memory").rename(tmp_path / "elsewhere")
        (snap / "memory").symlink_to(tmp_path / "elsewhere")
    elif damage == "sizes":
        # A consistent state.bin whose sregs is not this build's struct: another build.
        data = state.read_bytes() + bytes(8)
        manifest["vcpus"][0]["parts"]["sregs"] = {"offset": len(data) - 8, "size": 8}
        manifest["state_size"] = len(data)
        manifest["state_sha256"] = hashlib.sha256(data).hexdigest()
        state.write_bytes(data)
    if damage == "manifest-cut":
        path.write_text(path.read_text()[:200])
    else:
        path.write_text(json.dumps(manifest))
    proc = run_pyvmm("boot", "--restore", str(snap), timeout=60)
    assert_one_line_error(proc, message)
    assert not proc.stdout


def test_restore_refuses_what_the_snapshot_brings(guest_build, tmp_path):
    proc = run_pyvmm("boot", "--restore", str(tmp_path), "--memory", "128M")
    assert_one_line_error(proc, "--memory with --restore")
    proc = run_pyvmm("boot", "--restore", str(tmp_path), "--cpus", "2")
    assert_one_line_error(proc, "--cpus with --restore", "vCPUs")
    proc = run_pyvmm("boot", "--restore", str(tmp_path / "none"))
    assert_one_line_error(proc, "cannot open snapshot", "No such file")
    proc = run_pyvmm("boot", "--restore", str(tmp_path))
    assert_one_line_error(proc, "has no manifest.json")


def test_ctl_errors_are_one_line_and_leave_the_guest_running(guest_build, tmp_path):
    sock = tmp_path / "api.sock"
    proc = run_pyvmm("ctl", str(tmp_path / "nothing.sock"), "pause")
    assert_one_line_error(proc, "cannot connect to", "No such file")
    with GuestProcess(*counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 2\n")
        taken = tmp_path / "taken"
        taken.mkdir()
        assert_one_line_error(ctl(sock, "snapshot", str(taken)), "already exists")
        assert ctl_ok(sock, "stats")["state"] == "running"  # resumed after the failure
        # A second VM may not take the socket, and leaves it to the first.
        second = run_pyvmm("boot", *counter_args(guest_build, sock))
        assert_one_line_error(second, "--api-sock", "another process is serving on it")
        assert ctl_ok(sock, "stats")["state"] == "running"
        # Raw protocol: a bad line gets an error line, and the connection goes on.
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            f = s.makefile("rwb")
            for line in (b"not json\n", b'{"op": "bogus"}\n', b'{"op": "stats"}\n'):
                f.write(line)
                f.flush()
                response = json.loads(f.readline())
                assert response["ok"] == (line == b'{"op": "stats"}\n'), response
        guest.wait_for(f"count {guest.counts()[-1] + 2}\n".encode())


# --- live migration ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("transport, cpus", [("unix", 1), ("tcp", 1), ("unix", 2)])
def test_migrated_guest_counts_on_at_the_destination(guest_build, tmp_path, transport, cpus):
    sock = tmp_path / "api.sock"
    to = f"unix:{tmp_path / 'in.sock'}" if transport == "unix" else f"tcp:127.0.0.1:{free_port()}"
    with GuestProcess("--incoming", to) as dest:
        with GuestProcess("--cpus", str(cpus), *counter_args(guest_build, sock)) as source:
            source.wait_for(b"count 5\n")
            while not (tmp_path / "in.sock").exists() and transport == "unix":
                time.sleep(0.02)
            figures = ctl_ok(sock, "migrate", "--to", to)
            assert source.wait() == 0  # the source ends once the destination has it
            before = source.output()
        assert int(figures["rounds"]) >= 2
        assert float(figures["downtime_ms"]) > 0
        halves = float(figures["stop_and_copy_ms"]) + float(figures["destination_ms"])
        assert halves == pytest.approx(float(figures["downtime_ms"]), abs=0.02)
        assert sum(json.loads(figures["pages_per_round"])) > 0
        last = int(COUNT.findall(before)[-1])
        dest.wait_for(f"count {last + 3}\n".encode())
        assert BANNER not in dest.output()
        counts = [int(n) for n in COUNT.findall(before + dest.output())]
        assert counts == list(range(1, len(counts) + 1))


def test_failed_migration_leaves_the_guest_running(guest_build, tmp_path):
    sock = tmp_path / "api.sock"
    with GuestProcess(*counter_args(guest_build, sock)) as source:
        source.wait_for(b"count 2\n")
        proc = ctl(sock, "migrate", "--to", f"unix:{tmp_path / 'nobody'}")
        assert_one_line_error(proc, "cannot connect to", "No such file")
        assert_one_line_error(ctl(sock, "migrate", "--to", "udp:x"), "unix:PATH or tcp:HOST:PORT")
        # A destination that takes the header and goes away.
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(tmp_path / "flaky"))
            listener.listen(1)

            def hang_up():
                conn, _ = listener.accept()
                conn.recv(100)
                conn.close()

            threading.Thread(target=hang_up, daemon=True).start()
            proc = ctl(sock, "migrate", "--to", f"unix:{tmp_path / 'flaky'}")
        assert_one_line_error(proc, "failed", "the guest runs on")
        assert ctl_ok(sock, "stats")["state"] == "running"
        source.wait_for(f"count {source.counts()[-1] + 2}\n".encode())


def frame(kind: bytes, a: int, payload: bytes) -> bytes:
    """One frame of the migration stream (vmm/control/migration.py)."""
    return kind + a.to_bytes(8, "little") + len(payload).to_bytes(8, "little") + payload


def header(machine: object, memory: object = ((0, 64 << 20),)) -> bytes:
    return frame(b"H", 0, json.dumps({"format": "pyvmm-migration", "version": 2,
                                      "memory": memory, "machine": machine}).encode())  # fmt: skip


ONE_CPU = {"cpus": 1, "irqchip": False, "linux": False, "disks": []}


def assert_incoming_refuses(tmp_path, stream: bytes, message: str) -> None:
    """``stream`` sent to a ``pyvmm boot --incoming``: one line naming ``message``, exit 2,
    no word to the sender that the guest is in, and the socket gone."""
    address = tmp_path / "in.sock"
    with GuestProcess("--incoming", f"unix:{address}") as dest:
        while not address.exists():
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(address))
            s.sendall(stream)
            try:
                reply = s.recv(100)
            except ConnectionResetError:  # it closed with some of the stream unread
                reply = b""
            assert reply == b""
        assert dest.wait() == 2
        err = dest.stderr()
        assert err.count("\n") == 1 and message in err, err
        assert not address.exists()


@pytest.mark.parametrize(
    "stream, message",
    [
        (frame(b"H", 10, b"hello"), "bad migration header"),
        (header({**ONE_CPU, "cpus": "two"}), "machine field 'cpus': expected an integer"),
        (header({**ONE_CPU, "cpus": 4096}), "bad migration header: --cpus 4096"),
        (header(ONE_CPU) + frame(b"P", 1 << 40, bytes(4096)), "outside guest memory"),
        (header(ONE_CPU) + frame(b"X", 0, b""), "unexpected frame"),
    ],
)
def test_incoming_refuses_a_bad_stream_in_one_line(tmp_path, stream, message):
    assert_incoming_refuses(tmp_path, stream, message)


def test_incoming_refuses_a_state_that_is_not_the_machine_its_header_promised(
    guest_build, tmp_path
):
    """The destination builds its machine from the header before the state comes; a
    state of another machine (here one vCPU where the header said two) is refused."""
    snap, _ = take_snapshot(guest_build, tmp_path)
    manifest, state = (snap / "manifest.json").read_bytes(), (snap / "state.bin").read_bytes()
    stream = header({**ONE_CPU, "cpus": 2}) + frame(b"S", len(manifest), manifest + state)
    assert_incoming_refuses(tmp_path, stream, "the state's machine is not the header's")


def test_clones_of_one_snapshot_share_its_pages(guest_build, tmp_path):
    """pyvmm bench clones: three guests restored from one snapshot at once; the kernel's
    accounting says the guest-memory pages they only read are shared (PSS below RSS)."""
    out = tmp_path / "clones.json"
    proc = run_pyvmm("bench", "clones", "--clones", "3", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["clones"] == 3 and len(figures["per_clone"]) == 3
    guest = figures["sum"]["guest"]
    assert all(c["guest"]["Rss"] > 0 for c in figures["per_clone"])
    assert guest["Pss"] < guest["Rss"]
    assert "3 clones restored from one snapshot" in proc.stdout


def test_a_snapshot_that_cannot_be_written_leaves_nothing(guest_build, tmp_path):
    """A full disk (a 64 KiB tmpfs, smaller than the guest's touched memory): one line,
    no half-written snapshot left, and the guest runs on."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    sock = tmp_path / "api.sock"
    try:
        with GuestProcess(*counter_args(guest_build, sock)) as guest:
            guest.wait_for(b"count 2\n")
            proc = ctl(sock, "snapshot", str(small / "snap"))
            assert_one_line_error(proc, "cannot write the snapshot", "No space left")
            assert list(small.iterdir()) == []
            assert ctl_ok(sock, "stats")["state"] == "running"
            guest.wait_for(f"count {guest.counts()[-1] + 2}\n".encode())
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_socket_left_by_a_killed_vm_is_replaced(guest_build, tmp_path):
    """SIGKILL leaves the socket file behind; nobody answers on it, so the next VM takes
    the path (as QEMU does), and serves on it. Anything not a socket is left alone."""
    sock = tmp_path / "api.sock"
    with GuestProcess(*counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 1\n")
        guest.proc.kill()
        guest.wait()
    assert sock.is_socket()  # the leftover
    with GuestProcess(*counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 2\n")
        assert ctl_ok(sock, "stats")["state"] == "running"
        assert guest.interrupt() == 130
    assert not sock.exists()
    sock.write_text("not a socket")
    proc = run_pyvmm("boot", *counter_args(guest_build, sock))
    assert_one_line_error(proc, "--api-sock", "exists already and is not a socket")
    assert sock.read_text() == "not a socket"


KVM_MP_STATE_HALTED = 3  # <linux/kvm.h>: the vCPU waits in hlt


def privilege_level(snap, index: int = 0) -> int:
    """vCPU ``index``'s CPL when it was saved: the low bits of CS's selector, the first
    field of ``struct kvm_sregs`` (its ``kvm_segment``: base u64, limit u32, selector)."""
    manifest = json.loads((snap / "manifest.json").read_text())
    blob = manifest["vcpus"][index]["parts"]["sregs"]
    with open(snap / "state.bin", "rb") as f:
        f.seek(blob["offset"] + 12)
        return int.from_bytes(f.read(2), "little") & 3


def vcpu_states(snap) -> list[tuple[dict, int]]:
    """Each vCPU's registers and MP state, from a snapshot's manifest and state.bin."""
    manifest = json.loads((snap / "manifest.json").read_text())
    state = (snap / "state.bin").read_bytes()
    states = []
    for vcpu in manifest["vcpus"]:
        blob = vcpu["parts"]["mp_state"]
        states.append((vcpu["regs"], int.from_bytes(state[blob["offset"] :][:4], "little")))
    return states


def test_every_vcpu_is_saved_and_restored(guest_build, tmp_path):
    """A guest of two vCPUs: both are paused and saved; the second (the tiny kernel's
    AP, halted in its idle loop) is restored with its own registers and MP state, not
    left waiting for a SIPI as a new AP would be. A register changed in the manifest
    for vCPU 1 only is what a snapshot of the restored guest finds there."""
    sock, snap, again = tmp_path / "api.sock", tmp_path / "snap", tmp_path / "again"
    with GuestProcess("--cpus", "2", *counter_args(guest_build, sock)) as guest:
        guest.wait_for(b"count 5\n")
        assert ctl_ok(sock, "stats")["vcpus"] == "2"
        ctl_ok(sock, "snapshot", str(snap))
        assert ctl_ok(sock, "stats")["state"] == "running"
        guest.wait_for(f"count {guest.counts()[-1] + 2}\n".encode())  # runs on
        assert guest.interrupt() == 130
        before = guest.output()
    (regs0, _), (regs1, mp1) = vcpu_states(snap)
    assert mp1 == KVM_MP_STATE_HALTED and regs1["rip"] != regs0["rip"]
    manifest = json.loads((snap / "manifest.json").read_text())
    marked = manifest["vcpus"][1]["regs"]["r15"] ^ 0x5EED
    manifest["vcpus"][1]["regs"]["r15"] = marked
    (snap / "manifest.json").write_text(json.dumps(manifest))
    with GuestProcess("--restore", str(snap), "--api-sock", str(sock)) as restored:
        deadline = time.monotonic() + 60
        while len(restored.counts()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        ctl_ok(sock, "snapshot", str(again))
        assert restored.interrupt() == 130
        after = restored.output()
    assert BANNER not in after and b"CPUs up" not in after  # no boot, no bring-up
    counts = [int(n) for n in COUNT.findall(after)]
    # On from where it was saved: after count 5, before the original's last.
    assert len(counts) >= 3 and consecutive(counts)
    assert 5 <= counts[0] <= int(COUNT.findall(before)[-1]) + 1
    _, (regs1_again, mp1_again) = vcpu_states(again)
    assert mp1_again == KVM_MP_STATE_HALTED
    assert regs1_again["rip"] == regs1["rip"] and regs1_again["r15"] == marked


@needs_netns
def test_a_vm_with_a_network_card_is_not_saved_or_migrated_and_runs_on(guest_build, tmp_path):
    """A TAP is host state a snapshot does not hold: snapshot and migrate are one line
    each, nothing is written, and the guest (on a bridge in a namespace of the test's
    own) runs on."""
    from vmm.bench.measure import pyvmm_command
    from vmm.bench.net import Server
    from vmm.hostnet import netns

    sock = tmp_path / "api.sock"
    with netns.scratch("br0") as ns:
        argv = [*pyvmm_command(), "boot", *counter_args(guest_build, sock), "--net", "bridge=br0"]
        server = Server(ns, argv, b"count 2\n")
        try:
            proc = ctl(sock, "snapshot", str(tmp_path / "snap"))
            assert_one_line_error(proc, "network card (--net) cannot be saved or migrated")
            assert not (tmp_path / "snap").exists()
            proc = ctl(sock, "migrate", "--to", f"unix:{tmp_path / 'to.sock'}")
            assert_one_line_error(proc, "network card (--net) cannot be saved or migrated")
            assert ctl_ok(sock, "stats")["state"] == "running"
        finally:
            assert server.stop() == 130
