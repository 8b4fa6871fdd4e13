"""The Linux guest on virtio-net, reached from a test host of the test's own (a network
namespace with a bridge): ping, TCP echo and bulk both ways, the TAP gone afterwards.

Slow: a Linux boot under PVM (tests/test_linux_boot.py), then TCP through a guest
kernel whose ring-0 code is emulated.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from nettest import links, needs_netns
from vmtest import needs_kvm

from vmm.bench import net
from vmm.bench.machineinfo import kvm_kind
from vmm.devices.virtio.vhost import VHOST_NET_DEVICE
from vmm.guests.linux import NET_LINE
from vmm.hostnet import netns

pytestmark = [needs_kvm, needs_netns, pytest.mark.slow, pytest.mark.root]
ADDRESS = f"{net.HOST_IP}/{net.PREFIX}"
PVM = kvm_kind()["kind"] == "pvm"
PUBLISHED = 8007


def add_persistent_tap(ns: str, name: str) -> None:
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        bridge = ipr.link_lookup(ifname=net.BRIDGE)[0]
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], master=bridge, state="up")


@pytest.mark.parametrize(
    "option, extra",
    [
        ("bridge=br0", ["-p", f"{PUBLISHED}:7"]),
        ("tap=mine,offload=off", ["--ioeventfd"]),
        pytest.param("bridge=br0,vhost=on", [], marks=pytest.mark.skipif(
            not os.path.exists(VHOST_NET_DEVICE), reason="no /dev/vhost-net on this host")),
    ],
    ids=["new-tap-on-bridge", "existing-tap-no-offload-ioeventfd", "vhost"],
)  # fmt: skip
def test_guest_answers_ping_and_tcp_from_the_test_host(linux_build, option, extra):
    build, initramfs = linux_build
    with netns.scratch(net.BRIDGE, ADDRESS) as ns:
        if option.startswith("tap=mine"):
            add_persistent_tap(ns, "mine")
        argv = net.pyvmm_vm(build, initramfs, PVM, option) + extra
        server = net.Server(ns, argv, NET_LINE.encode())
        try:
            assert "pyvmm" in "".join(links(ns)) or option.startswith("tap=mine")
            ping = subprocess.run(
                netns.command(ns, ["busybox", "ping", "-c", "2", "-W", "30", net.GUEST_IP]),
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert ping.returncode == 0, ping.stdout + ping.stderr
            net._wait_for_echo(ns, net.GUEST_IP)
            assert len(net.round_trips(ns, net.GUEST_IP, 20)) == 20  # each byte checked
            assert net.upload(ns, net.GUEST_IP, 1 << 20) > 0
            assert net.download(ns, net.GUEST_IP) > 0  # every byte of the source arrived
            if "-p" in extra:  # the test host's own address, port 8007: DNAT to the guest's 7
                assert len(net.round_trips(ns, net.HOST_IP, 5, port=PUBLISHED)) == 5
        finally:
            status = server.stop()
        output = server.output.decode(errors="replace")
        # The kernel's ip= configured eth0, the card pyvmm gave a MAC from QEMU's range.
        assert "IP-Config: Complete" in output and "hwaddr=52:54:00" in output, output[-3000:]
        assert status == 130, output[-3000:]  # stopped by SIGINT, cleanly
        left = links(ns)
        assert not [name for name in left if name.startswith("pyvmm")], left
        assert ("mine" in left) == option.startswith("tap=mine")
        tables = subprocess.run(netns.command(ns, ["nft", "list", "tables"]), capture_output=True)
        assert b"pyvmm" not in tables.stdout  # the published port's table went with the VM


def test_guest_with_two_cpus_answers_on_its_card(linux_smp_build):
    """--cpus 2 with --net: both CPUs up, the card's interrupt delivered (to whichever
    CPU the guest routes it), echo through a published port."""
    build, initramfs = linux_smp_build
    with netns.scratch(net.BRIDGE, ADDRESS) as ns:
        argv = net.pyvmm_vm(build, initramfs, PVM, "bridge=br0") + [
            "--cpus", "2", "-p", f"{PUBLISHED}:7",
        ]  # fmt: skip
        server = net.Server(ns, argv, NET_LINE.encode())
        try:
            net._wait_for_echo(ns, net.GUEST_IP)
            assert len(net.round_trips(ns, net.GUEST_IP, 10)) == 10
            assert len(net.round_trips(ns, net.HOST_IP, 5, port=PUBLISHED)) == 5
            assert net.download(ns, net.GUEST_IP) > 0
        finally:
            status = server.stop()
        output = server.output.decode(errors="replace")
        assert "init: nproc=2" in output, output[-3000:]
        assert status == 130, output[-3000:]
