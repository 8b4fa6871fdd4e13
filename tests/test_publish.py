"""Published ports (vmm/hostnet/publish.py): the option, the guest's address from ip=, and the
nft table made and removed in a namespace of the test's own."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from nettest import links, needs_netns
from vmtest import assert_one_line_error, needs_kvm, run_pyvmm

from vmm.errors import PyvmmError
from vmm.guests import tiny as guest
from vmm.hostnet import netns
from vmm.hostnet.publish import PortTable, Publish, guest_address, parse_publish


@pytest.mark.parametrize(
    "text, publish",
    [
        ("8080:80", Publish(8080, 80)),
        ("10.0.2.1:53:5353/udp", Publish(53, 5353, "udp", "10.0.2.1")),
    ],
)
def test_publish_option_parses(text, publish):
    assert parse_publish(text) == publish


@pytest.mark.parametrize(
    "text", ["", "80", "0:80", "80:70000", "x:1:2", "1.2.3:80:80", "80:80/sctp"]
)
def test_bad_publish_option_is_one_clear_error(text):
    with pytest.raises(PyvmmError, match="^-p "):
        parse_publish(text)


def test_guest_address_comes_from_the_kernels_ip_parameter():
    assert guest_address("console=ttyS0 ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off") == (
        "10.0.2.15"
    )
    with pytest.raises(PyvmmError, match="ip="):
        guest_address("console=ttyS0 ip=dhcp")


@needs_netns
@pytest.mark.root
def test_port_table_is_made_in_one_go_and_removed():
    with netns.scratch() as ns:
        with netns.entered(ns):
            table = PortTable("10.0.2.15", [Publish(8080, 80), Publish(53, 53, "udp", "127.0.0.2")])
        listed = subprocess.run(netns.command(ns, ["nft", "list", "table", "ip", table.name]),
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert "tcp dport 8080 dnat to 10.0.2.15:80" in listed
        assert "ip daddr 127.0.0.2 udp dport 53 dnat to 10.0.2.15:53" in listed
        with netns.entered(ns):
            table.close()
        tables = subprocess.run(netns.command(ns, ["nft", "list", "tables"]),
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert table.name not in tables


def _vm_tables(ns: str) -> list[str]:
    listed = subprocess.run(netns.command(ns, ["nft", "list", "tables", "ip"]),
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [line.split()[-1] for line in listed.splitlines() if "pyvmm-vm-" in line]


@needs_kvm
@needs_netns
@pytest.mark.root
def test_killed_vms_table_is_removed_by_the_next_boot_and_a_port_in_use_is_refused():
    """kill -9 leaves the port table (nothing of pyvmm runs to remove it); the next
    ``pyvmm boot -p`` removes it, as Docker cleans up after itself when it starts again,
    and a live VM's table is left alone. A port the live VM publishes, or a host socket
    holds, is one line, exit 2, with nothing made (Docker: "port is already allocated")."""
    ip = "ip=10.0.2.15::10.0.2.1:255.255.255.0::eth0:off"

    def boot(ns: str, tap: str, port: int, program: str) -> list[str]:
        argv = [sys.executable, "-m", "vmm", "boot", "--net", f"tap={tap}", "-p", f"{port}:80",
                "--cmdline", ip, "--program", program]  # fmt: skip
        return netns.command(ns, argv)

    with netns.scratch() as ns:
        procs = [subprocess.Popen(boot(ns, f"t{i}", 8080 + i, guest.COUNTER),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(2)]  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while len(_vm_tables(ns)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            tables = _vm_tables(ns)
            assert len(tables) == 2, tables
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            assert len(_vm_tables(ns)) == 2  # the killed one's is left behind
            done = subprocess.run(boot(ns, "t2", 8082, guest.DEMO_PROGRAM), capture_output=True,
                                  timeout=120)  # fmt: skip
            assert done.returncode == 0, done.stderr
            left = _vm_tables(ns)
            # The live VM's is left alone; the killed one's is gone, and the new one's too.
            assert len(left) == 1 and f"-{procs[1].pid}-" in left[0], left
            taken = subprocess.run(boot(ns, "t3", 8081, guest.DEMO_PROGRAM), capture_output=True,
                                   text=True, timeout=120)  # fmt: skip
            assert_one_line_error(taken, f"port 8081/tcp is already published by {left[0]}")
            with netns.entered(ns):
                holder = socket.create_server(("0.0.0.0", 8090))
            with holder:
                held = subprocess.run(boot(ns, "t3", 8090, guest.DEMO_PROGRAM),
                                      capture_output=True, text=True, timeout=120)  # fmt: skip
            assert_one_line_error(held, "port 8090/tcp is in use on the host")
            assert _vm_tables(ns) == left and "t3" not in links(ns)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    "args, said",
    [
        (["--net", "tap=a,bridge=b"], "--net 'tap=a,bridge=b': give exactly one of"),
        (["-p", "8080:80"], "-p needs a network card"),
        (["--net", "tap=a", "-p", "8080:80"], "-p needs the guest's address"),
        (["--net", "tap=a", "-p", "80"], "-p '80': use [HOSTIP:]HOSTPORT:GUESTPORT"),
        (["--disk", "a", "--disk", "b", "--disk", "c", "--net", "tap=a", "--net", "tap=b"],
         "at most 4 --disk and --net options together"),
    ],
)  # fmt: skip
def test_bad_net_or_publish_option_on_boot_is_one_line_exit_2(args, said):
    """Refused before anything is made: no TAP, no table, no VM."""
    assert_one_line_error(run_pyvmm("boot", *args), said)
