"""Container networks (vmm/container/engine/network.py), inside a test host of the test's own: a
network namespace made here, where pyvmm runs (nsenter) and makes its bridges, veths
and nft tables; nothing of the machine's own network changes, and the traffic goes
only between addresses made here.

Container to container, the test host to a container, published ports (the host's
address, 127.0.0.1, and hairpin from a container), none/host/container:NAME, IPAM
exhaustion and reuse, names and ports in use, and everything gone after ``rm``, even
when the engine was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from containertest import Pyvmm, one_line_error
from nettest import links, needs_netns
from vmtest import needs_kvm

from vmm.hostnet import netns

pytestmark = [needs_netns]
SERVE = "exec busybox nc -ll -p 80 -e busybox cat"  # echo, one connection after another


@pytest.fixture
def host(pyvmm):
    """(namespace, a pyvmm runner inside it); on the way out the test's containers and
    networks are removed in there, where they were made."""
    with netns.scratch() as ns:
        inside = Pyvmm(pyvmm.root)
        inside.command = netns.command(ns, inside.command)
        made = set((pyvmm.root / "networks").glob("*"))
        try:
            yield ns, inside
        finally:
            ids = inside("container", "ps", "-a", "-q").stdout.split()
            if ids:
                inside("container", "rm", "-f", *ids)
            for path in set((pyvmm.root / "networks").glob("*")) - made:
                if path.name != "bridge":
                    inside("network", "rm", path.name)


def address(runner: Pyvmm, network: str, name: str) -> str:
    """Container ``name``'s address on ``network``, from ``network inspect``."""
    cid = runner.inspect(name)["id"]
    return json.loads(runner.ok("network", "inspect", network))["containers"][cid]


def echo(ns: str, addr: str, port: int, data: bytes = b"ping\n", timeout: float = 30) -> bytes:
    """``data`` sent to ``addr:port`` from the test host, and what comes back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with netns.entered(ns):
                sock = socket.create_connection((addr, port), timeout=10)
            with sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := sock.recv(4096):
                    got += chunk
                if got or time.monotonic() > deadline:
                    return got
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)  # the server is not listening yet


def serve(runner: Pyvmm, name: str, *options: str) -> None:
    runner.ok("container", "run", "-d", "--name", name, *options, "busybox", "sh", "-c", SERVE)


def nft_tables(ns: str) -> str:
    return subprocess.run(
        netns.command(ns, ["nft", "list", "tables"]), capture_output=True, text=True, check=True
    ).stdout


def test_containers_reach_each_other_and_the_test_host_reaches_them(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.77.0.0/24", "n1")
    serve(pyvmm, "web", "--network", "n1")
    web = address(pyvmm, "n1", "web")
    assert web == "10.77.0.2"  # the first after the gateway, 10.77.0.1
    shown = pyvmm.inspect("web")["network"]
    assert (shown["mode"], shown["network"], shown["address"]) == ("network", "n1", web)
    assert echo(ns, web, 80) == b"ping\n"
    out = pyvmm.ok("container", "run", "--rm", "--network", "n1", "busybox", "sh", "-c",
                   f"ip -4 addr show eth0; ip route; echo hello | nc {web} 80")  # fmt: skip
    assert "inet 10.77.0.3/24" in out and "default via 10.77.0.1" in out, out
    assert out.rstrip().endswith("hello"), out
    bridge = json.loads(pyvmm.ok("network", "inspect", "n1"))["bridge"]
    assert bridge in links(ns)


def test_published_port_answers_on_the_hosts_address_on_127_0_0_1_and_hairpin(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.78.0.0/24", "n2")
    serve(pyvmm, "pub", "--network", "n2", "-p", "8080:80")
    assert echo(ns, "10.78.0.1", 8080) == b"ping\n"  # an address of the test host's own
    assert echo(ns, "127.0.0.1", 8080) == b"ping\n"  # route_localnet, masqueraded
    out = pyvmm.ok("container", "run", "--rm", "--network", "n2", "busybox", "sh", "-c",
                   "echo hairpin | nc 10.78.0.1 8080")  # fmt: skip
    assert out.strip() == "hairpin", out
    # A port in use, by a container or by a host socket: one line, exit 2, nothing made.
    again = pyvmm("container", "run", "--network", "n2", "-p", "8080:80", "busybox", "true")
    assert again.returncode == 2 and "8080/tcp is already published" in one_line_error(again)
    with netns.entered(ns):
        held = socket.socket()
    with held:
        held.bind(("0.0.0.0", 8181))
        held.listen()
        busy = pyvmm("container", "run", "--network", "n2", "-p", "8181:80", "busybox", "true")
        assert busy.returncode == 2 and "in use on the host" in one_line_error(busy)
    assert pyvmm.ok("container", "ps", "-a", "-q").split() == [pyvmm.inspect("pub")["id"][:12]]


def test_rm_removes_the_veth_namespace_rules_and_address(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.79.0.0/24", "n3")
    serve(pyvmm, "gone", "--network", "n3", "-p", "8081:80")
    cid = pyvmm.inspect("gone")["id"]
    assert f"pvv{cid[:12]}" in links(ns)
    assert f"pyvmm-c-{cid[:12]}" in nft_tables(ns)
    assert os.path.exists(f"/run/netns/pyvmm-c-{cid[:16]}")
    pyvmm.ok("container", "rm", "-f", "gone")
    assert f"pvv{cid[:12]}" not in links(ns)
    assert f"pyvmm-c-{cid[:12]}" not in nft_tables(ns)
    assert not os.path.exists(f"/run/netns/pyvmm-c-{cid[:16]}")
    assert json.loads(pyvmm.ok("network", "inspect", "n3"))["containers"] == {}
    bridge = json.loads(pyvmm.ok("network", "inspect", "n3"))["bridge"]
    pyvmm.ok("network", "rm", "n3")
    assert bridge not in links(ns) and "pyvmm-n-" not in nft_tables(ns)


def test_a_killed_engine_leaves_nothing_after_rm(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.80.0.0/24", "n4")
    serve(pyvmm, "victim", "--network", "n4", "-p", "8082:80")
    rec = pyvmm.inspect("victim")
    for pid in (rec["monitor_pid"], rec["pid"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "Exited" not in pyvmm.ok("container", "ps", "-a") and time.monotonic() < deadline:
        time.sleep(0.2)
    # Found dead by ps's reconcile: its veth, port table and address go at once.
    assert not [n for n in links(ns) if n.startswith("pvv")]
    assert "pyvmm-c-" not in nft_tables(ns)
    assert json.loads(pyvmm.ok("network", "inspect", "n4"))["containers"] == {}
    pyvmm.ok("container", "rm", "victim")
    assert not os.path.exists(f"/run/netns/pyvmm-c-{rec['id'][:16]}")
    assert not (pyvmm.root / "endpoints" / rec["id"]).exists()


def test_a_stopped_container_holds_no_address_or_port_and_start_plugs_it_in_again(host):
    """Docker's and Podman's rule: what a container holds on a network (its address,
    veth and published ports) is given up when it stops and taken again at start."""
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.84.0.0/24", "n6")
    serve(pyvmm, "first", "--network", "n6", "-p", "8084:80")
    cid = pyvmm.inspect("first")["id"]
    pyvmm.ok("container", "stop", "-t", "1", "first")
    assert f"pvv{cid[:12]}" not in links(ns)
    assert f"pyvmm-c-{cid[:12]}" not in nft_tables(ns)
    assert json.loads(pyvmm.ok("network", "inspect", "n6"))["containers"] == {}
    assert pyvmm.inspect("first")["network"]["address"] is None
    busy = pyvmm("network", "rm", "n6")  # the stopped container still names it
    assert busy.returncode == 2 and f"in use by container(s) {cid[:12]}" in one_line_error(busy)
    serve(pyvmm, "second", "--network", "n6", "-p", "8084:80")  # port and address free
    assert address(pyvmm, "n6", "second") == "10.84.0.2"
    taken = pyvmm("container", "start", "first")
    assert taken.returncode == 2
    assert "8084/tcp is already published" in one_line_error(taken)
    assert pyvmm.inspect("first")["status"] == "exited" and f"pvv{cid[:12]}" not in links(ns)
    pyvmm.ok("container", "rm", "-f", "second")
    pyvmm.ok("container", "start", "first")
    assert pyvmm.inspect("first")["network"]["address"] == "10.84.0.2"
    assert echo(ns, "10.84.0.1", 8084) == b"ping\n"


def test_a_created_container_holds_no_address_until_it_starts(host):
    """``docker create`` allocates nothing on the network: the address, veth and ports
    come with ``start``, so a created container never keeps them from a running one."""
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.85.0.0/30", "n7")  # one free address
    pyvmm.ok("container", "create", "--name", "made", "--network", "n7", "-p", "8085:80",
             "busybox", "sh", "-c", SERVE)  # fmt: skip
    cid = pyvmm.inspect("made")["id"]
    assert pyvmm.inspect("made")["network"]["address"] is None
    assert json.loads(pyvmm.ok("network", "inspect", "n7"))["containers"] == {}
    assert f"pvv{cid[:12]}" not in links(ns) and f"pyvmm-c-{cid[:12]}" not in nft_tables(ns)
    serve(pyvmm, "running", "--network", "n7")  # takes the one address
    full = pyvmm("container", "start", "made")
    assert full.returncode == 2 and "no free address left" in one_line_error(full)
    assert pyvmm.inspect("made")["status"] == "created" and f"pvv{cid[:12]}" not in links(ns)
    pyvmm.ok("container", "rm", "-f", "running")
    pyvmm.ok("container", "start", "made")
    assert address(pyvmm, "n7", "made") == "10.85.0.2"
    assert echo(ns, "10.85.0.1", 8085) == b"ping\n"


def test_addresses_run_out_one_line_and_come_back_on_rm(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.81.0.0/30", "tiny")  # .1 gateway, .2 free
    serve(pyvmm, "first", "--network", "tiny")
    full = pyvmm("container", "run", "--name", "second", "--network", "tiny", "busybox", "true")
    assert full.returncode == 2
    assert "network tiny has no free address left in 10.81.0.0/30" in one_line_error(full)
    assert len(pyvmm.ok("container", "ps", "-a", "-q").split()) == 1  # nothing of it left
    assert not [n for n in links(ns) if n.startswith("pvv")][1:]
    pyvmm.ok("container", "rm", "-f", "first")
    out = pyvmm.ok("container", "run", "--rm", "--network", "tiny", "busybox", "ip", "-4", "addr")
    assert "inet 10.81.0.2/30" in out, out


def test_names_and_subnets_in_use_and_bad_modes_are_one_line_exit_2(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.82.0.0/24", "dup")
    for args, said in [
        (["network", "create", "dup"], "network dup already exists"),
        (["network", "create", "--subnet", "10.82.0.128/25", "other"], "overlaps"),
        (["network", "create", "--subnet", "10.82.1.1/24", "x"], "--subnet 10.82.1.1/24"),
        (["network", "create", "host"], "a --network mode of its own"),
        (["network", "rm", "nosuch"], "no such network: nosuch"),
        (["network", "rm", "bridge"], "default network"),
        (["container", "run", "--network", "nosuch", "busybox", "true"], "no such network"),
        (["container", "run", "--network", "container:nosuch", "busybox", "true"],
         "no such container"),
        (["container", "run", "--network", "host", "-p", "80:80", "busybox", "true"],
         "-p with --network host"),
        (["container", "run", "-p", "80", "busybox", "true"], "-p '80'"),
    ]:  # fmt: skip
        r = pyvmm(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert said in one_line_error(r), (args, r.stderr)
    serve(pyvmm, "user", "--network", "dup")
    busy = pyvmm("network", "rm", "dup")
    assert busy.returncode == 2 and "in use by container" in one_line_error(busy)


def test_none_host_and_container_modes(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.83.0.0/24", "n6")
    out = pyvmm.ok("container", "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(": ")[1] for line in out.splitlines()] == ["lo"], out
    bridge = json.loads(pyvmm.ok("network", "inspect", "n6"))["bridge"]
    out = pyvmm.ok("container", "run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert bridge in out, out  # the test host's own interfaces
    serve(pyvmm, "base", "--network", "n6")
    out = pyvmm.ok("container", "run", "--rm", "--network", "container:base", "busybox", "sh",
                   "-c", "ip -4 addr show eth0; echo shared | nc 127.0.0.1 80")  # fmt: skip
    assert "inet 10.83.0.2/24" in out and out.rstrip().endswith("shared"), out


def test_default_bridge_network_is_made_on_first_use(host):
    ns, pyvmm = host
    serve(pyvmm, "dflt", "-p", "8083:80")  # -p alone: the default network, as in Docker
    rec = json.loads(pyvmm.ok("network", "inspect", "bridge"))
    assert rec["bridge"] in links(ns)
    addr = rec["containers"][pyvmm.inspect("dflt")["id"]]
    assert echo(ns, addr, 80) == b"ping\n"
    assert echo(ns, "127.0.0.1", 8083) == b"ping\n"
    assert "bridge" in pyvmm.ok("network", "ls")


def test_containers_on_a_user_network_find_each_other_by_name(host):
    """/etc/hosts kept current (pyvmm's answer to Docker's embedded DNS): a container
    started first learns of one started later; /etc/hostname and resolv.conf written."""
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.84.0.0/24", "n7")
    watch = "until grep -q late /etc/hosts; do sleep 0.2; done; echo seen-late; sleep 60"
    pyvmm.ok("container", "run", "-d", "--name", "early", "--hostname", "early-host",
             "--network", "n7", "busybox", "sh", "-c", watch)  # fmt: skip
    serve(pyvmm, "late", "--network", "n7")
    out = pyvmm.ok("container", "run", "--rm", "--name", "asker", "--hostname", "asked",
                   "--network", "n7", "busybox", "sh", "-c", "cat /etc/hostname; "
                   "grep -c nameserver /etc/resolv.conf; echo byname | nc late 80")  # fmt: skip
    hostname, nameservers, answer = out.split()
    assert hostname == "asked" and int(nameservers) >= 1, out
    assert answer == "byname", out
    deadline = time.monotonic() + 30  # the running container's own /etc/hosts changed
    while "seen-late" not in pyvmm.ok("container", "logs", "early"):
        assert time.monotonic() < deadline, pyvmm.ok("container", "logs", "early")
        time.sleep(0.2)
    cid = pyvmm.inspect("early")["id"]
    hosts = (pyvmm.root / "endpoints" / cid / "hosts").read_text()
    assert "10.84.0.2\tearly-host early" in hosts and "10.84.0.3\tlate" in hosts, hosts
    assert "asker" not in hosts  # gone with --rm


def test_a_renamed_container_is_found_by_its_new_name_on_its_network(host):
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.85.0.0/24", "n8")
    serve(pyvmm, "before", "--network", "n8")
    pyvmm.ok("container", "rename", "before", "after")
    out = pyvmm.ok("container", "run", "--rm", "--network", "n8", "busybox", "sh", "-c",
                   "grep -c before /etc/hosts; echo byname | nc after 80")  # fmt: skip
    assert out.split() == ["0", "byname"], out
    hosts = (pyvmm.root / "endpoints" / pyvmm.inspect("after")["id"] / "hosts").read_text()
    assert "10.85.0.2\t" in hosts and hosts.rstrip().endswith(" after"), hosts


@needs_kvm
@pytest.mark.slow
def test_a_vm_and_a_container_on_one_network(host, linux_build):
    """A Linux VM on the bridge of a pyvmm network (--net bridge=), at the address its
    ip= gives it, answers a container on that network: one wire for both."""
    from vmm.bench import net
    from vmm.bench.machineinfo import kvm_kind
    from vmm.guests.linux import ECHO_PORT, NET_LINE

    ns, pyvmm = host
    build, initramfs = linux_build
    pyvmm.ok("network", "create", "--subnet", "10.0.2.0/24", "vmnet")
    rec = json.loads(pyvmm.ok("network", "inspect", "vmnet"))
    assert rec["gateway"] == net.HOST_IP  # the gateway the guest's ip= names
    bridge = rec["bridge"]
    pvm = kvm_kind()["kind"] == "pvm"
    vm = net.Server(ns, net.pyvmm_vm(build, initramfs, pvm, f"bridge={bridge}"), NET_LINE.encode())
    try:
        net._wait_for_echo(ns, net.GUEST_IP)  # its services start just before the line
        ask = f"echo from-container | nc {net.GUEST_IP} {ECHO_PORT}"
        out = pyvmm.ok("container", "run", "--rm", "--network", "vmnet", "busybox", "sh", "-c",
                       ask, timeout=300)  # fmt: skip
        assert out.strip() == "from-container", out
    finally:
        assert vm.stop() == 130, vm.output[-2000:]


def test_outbound_connections_are_masqueraded_as_the_hosts_address(host):
    """Beyond the test host, a second namespace ("outside", a veth away, with no route
    back to the containers' subnet) sees a container's connection come from the test
    host's own address: forwarding on, and the network's masquerade rule."""
    from pyroute2 import NetNS

    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.86.0.0/24", "n8")
    with netns.scratch() as outside:
        with NetNS(ns) as inner:
            inner.link("add", ifname="uplink", kind="veth", peer="wan")
            wan = inner.link_lookup(ifname="wan")[0]
            fd = os.open(f"/run/netns/{outside}", os.O_RDONLY)
            try:
                inner.link("set", index=wan, net_ns_fd=fd)
            finally:
                os.close(fd)
            uplink = inner.link_lookup(ifname="uplink")[0]
            inner.addr("add", index=uplink, address="192.0.2.1", prefixlen=24)
            inner.link("set", index=uplink, state="up")
        with NetNS(outside) as far:
            wan = far.link_lookup(ifname="wan")[0]
            far.addr("add", index=wan, address="192.0.2.2", prefixlen=24)
            far.link("set", index=wan, state="up")
        with netns.entered(outside):
            listener = socket.create_server(("192.0.2.2", 9000))
        seen = []

        def answer():
            conn, peer = listener.accept()
            with conn:
                seen.append(peer[0])
                conn.sendall(f"{peer[0]}\n".encode())

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            out = pyvmm.ok("container", "run", "--rm", "--network", "n8", "busybox", "sh", "-c",
                           "nc 192.0.2.2 9000 </dev/null")  # fmt: skip
        finally:
            listener.close()
        thread.join(10)
    assert out.strip() == "192.0.2.1" and seen == ["192.0.2.1"], (out, seen)


@pytest.mark.slow  # Podman, where it is installed, and a benchmark's runs
def test_bench_net_measures_the_container_rows(tmp_path):
    """pyvmm bench net's container rows (in its own namespace and state root), and
    Podman's beside them where Podman and runc are installed: every figure measured,
    the table names them, nothing left under /run/netns: the bench's own, an empty
    tmpfs there in a mount namespace of the test's (another copy of the suite names its
    containers' namespaces under the machine's /run/netns meanwhile)."""
    out, left = tmp_path / "net.json", tmp_path / "left"
    keys = {"container", "container_published"}
    if shutil.which("podman") and shutil.which("runc"):
        keys.add("podman")
    only = [a for k in sorted(keys) for a in ("--only", k)]
    private = 'mount -t tmpfs tmpfs /run/netns && "$@"; s=$?; ls -A /run/netns > "$0"; exit $s'
    os.makedirs("/run/netns", exist_ok=True)  # as ip netns and pyvmm make it
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", private, left, *Pyvmm(tmp_path).command,
         "bench", "net", "--runs", "1", *only, "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == keys
    for figures in rows.values():
        assert all(figures[m]["median"] > 0 for m in ("rtt_us", "upload_mib_s", "download_mib_s"))
    assert "published port (-p, DNAT)" in proc.stdout
    names = left.read_text().split()
    assert not [n for n in names if n.startswith("pyvmm-c-")], names  # its containers' gone


def test_an_endpoint_left_without_its_container_is_swept_by_ps(host):
    """What a pyvmm killed half-way through create leaves: a network endpoint of no
    container (made here by removing the container's files behind pyvmm's back). The
    next ``container ps`` removes its namespace and record (and its veth and address,
    which a created container does not have yet but one killed in ``run`` would)."""
    from vmm.container.linux.fdtree import remove_tree

    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.87.0.0/24", "n9")
    pyvmm.ok("container", "create", "--name", "orphan", "--network", "n9", "busybox", "true")
    cid = pyvmm.inspect("orphan")["id"]
    assert os.path.exists(f"/run/netns/pyvmm-c-{cid[:16]}")
    remove_tree(pyvmm.root / "containers" / cid)
    os.unlink(pyvmm.root / "names" / "orphan")
    assert pyvmm.ok("container", "ps", "-a", "-q").split() == []
    assert f"pvv{cid[:12]}" not in links(ns)
    assert not os.path.exists(f"/run/netns/pyvmm-c-{cid[:16]}")
    assert not (pyvmm.root / "endpoints" / cid).exists()
    assert json.loads(pyvmm.ok("network", "inspect", "n9"))["containers"] == {}


def test_a_tampered_endpoint_record_cannot_name_the_hosts_interfaces(host):
    """rm deletes by the names pyvmm made for the container, never by names read from
    its record: a record naming the network's bridge as its veth is broken, the bridge
    stays, and the container's own veth and namespace still go."""
    ns, pyvmm = host
    pyvmm.ok("network", "create", "--subnet", "10.88.0.0/24", "n10")
    bridge = json.loads(pyvmm.ok("network", "inspect", "n10"))["bridge"]
    pyvmm.ok("container", "run", "--name", "tampered", "--network", "n10", "busybox", "true")
    cid = pyvmm.inspect("tampered")["id"]
    record = pyvmm.root / "endpoints" / cid / "endpoint.json"
    data = json.loads(record.read_text())
    data["veth"] = bridge
    record.write_text(json.dumps(data))
    pyvmm.ok("container", "rm", "tampered")
    left = links(ns)
    assert bridge in left and f"pvv{cid[:12]}" not in left, left
    assert not os.path.exists(f"/run/netns/pyvmm-c-{cid[:16]}")
    assert json.loads(pyvmm.ok("network", "inspect", "n10"))["containers"] == {}
