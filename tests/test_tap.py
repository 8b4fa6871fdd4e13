"""TAP interfaces (vmm/hostnet/tap.py) in a network namespace the test makes: created and gone
with the fd, attached and left alone, enslaved to a bridge, and the bad names."""

from __future__ import annotations

import subprocess
import sys

import pytest
from nettest import links, needs_netns

from vmm.hostnet.netns import command, scratch

pytestmark = [needs_netns, pytest.mark.root]

SCRIPT = """
import sys
from vmm.hostnet.tap import Tap, TapError
try:
    tap = Tap.open(tap=sys.argv[1] or None, bridge=sys.argv[2] or None)
except TapError as e:
    print("error:", e)
    sys.exit(2)
print(tap.name, tap.created, flush=True)
sys.stdin.read()  # hold the fd until the test has looked
tap.close()
"""


def open_tap(name: str, tap: str = "", bridge: str = "") -> subprocess.Popen:
    """A process in namespace ``name`` holding a TAP open until its stdin closes."""
    return subprocess.Popen(
        command(name, [sys.executable, "-c", SCRIPT, tap, bridge]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_tap_pyvmm_creates_is_up_and_gone_with_its_fd():
    with scratch() as name:
        proc = open_tap(name, tap="vmtap0")
        assert proc.stdout.readline() == "vmtap0 True\n"
        assert "vmtap0" in links(name)
        finish(proc)
        assert "vmtap0" not in links(name)


def test_existing_tap_is_attached_and_left_behind():
    with scratch() as name:
        subprocess.run(
            command(name, ["ip", "tuntap", "add", "mine", "mode", "tap"]),
            check=True,
        )
        proc = open_tap(name, tap="mine")
        assert proc.stdout.readline() == "mine False\n"
        finish(proc)
        assert "mine" in links(name)


def test_bridge_gets_a_new_tap_enslaved_to_it():
    with scratch(bridge="br0") as name:
        proc = open_tap(name, bridge="br0")
        tap, created = proc.stdout.readline().split()
        assert tap.startswith("pyvmm") and created == "True"
        found = links(name)
        from pyroute2 import NetNS

        with NetNS(name) as ns:
            bridge_index = ns.link_lookup(ifname="br0")[0]
        assert found[tap] == bridge_index
        finish(proc)
        assert tap not in links(name)


@pytest.mark.parametrize(
    "tap, bridge, said",
    [
        ("lo", "", "lo exists and is not a TAP"),
        ("", "lo", "lo is not a bridge"),
        ("", "nobridge", "nobridge does not exist"),
        ("a/b", "", "not an interface name"),
        ("sixteen-chars-xx", "", "not an interface name"),
    ],
)
def test_unusable_tap_or_bridge_is_one_clear_error_and_leaves_nothing(tap, bridge, said):
    with scratch() as name:
        before = links(name)
        proc = open_tap(name, tap=tap, bridge=bridge)
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 2
        assert out.startswith("error: --net ") and said in out, out
        assert links(name) == before


def test_tap_pyvmm_creates_goes_even_when_pyvmm_is_killed():
    with scratch(bridge="br0") as name:
        proc = open_tap(name, bridge="br0")
        tap = proc.stdout.readline().split()[0]
        assert tap in links(name)
        proc.kill()  # SIGKILL: no closer runs
        proc.wait(timeout=30)
        assert tap not in links(name)
