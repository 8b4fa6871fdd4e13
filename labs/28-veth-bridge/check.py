"""Lab 28's checks: mini_run --net puts the container on a bridge through a veth pair,
with its address and default route, reachable both ways, and leaves nothing behind.

Each check makes a network namespace of its own (vmm/hostnet/netns.py), the "host" of the lab:
a bridge with the gateway's address on it. mini_run.py runs inside it (nsenter), so
nothing of the machine's own network changes, and the namespace goes with everything in
it, whatever the student's code left.
"""

import contextlib
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, mini  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed, tail  # noqa: E402
from vmm.hostnet import netns  # noqa: E402

TITLE = "mini-run 9: veth and a bridge by hand"
CONCEPT = "a network namespace, a veth pair across it, a bridge, an address and a route"
BRIDGE, GATEWAY, ADDRESS, PREFIX = "br28", "10.28.0.1", "10.28.0.2", 24
PORT = 2828
NET = ("--net=" + BRIDGE, f"--ip={ADDRESS}/{PREFIX}", "--gateway=" + GATEWAY)


@contextlib.contextmanager
def _host() -> Iterator[str]:
    with netns.scratch(BRIDGE, f"{GATEWAY}/{PREFIX}") as ns:
        yield ns


def _links(ns: str) -> dict[str, int | None]:
    """Interface name -> its master's index, in the lab's host namespace."""
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        return {link.get("ifname"): link.get("master") for link in ipr.get_links()}


def _bridge_index(ns: str) -> int:
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        return ipr.link_lookup(ifname=BRIDGE)[0]


def _run(workdir: Path, ns: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return mini(workdir, *NET, "/bin/sh", "-c", script, timeout=timeout,
                inside=tuple(netns.command(ns, [])))  # fmt: skip


def address_and_route(workdir: Path) -> str:
    with _host() as ns:
        proc = _run(workdir, ns, "ip -4 addr show; echo ---; ip route")
    if proc.returncode:
        raise CheckFailed(
            f"mini_run --net failed with status {proc.returncode}: the container could not set "
            f"up its eth0 (is the veth's end in its namespace?):\n{tail(proc)}"
        )
    addresses, _, routes = proc.stdout.partition("---")
    if "eth0" not in addresses:
        raise CheckFailed(
            f"the container has no eth0: the veth's end must be moved into the child's "
            f"network namespace and renamed there:\n{tail(proc)}"
        )
    if f"inet {ADDRESS}/{PREFIX}" not in addresses:
        raise CheckFailed(f"eth0 has not {ADDRESS}/{PREFIX}:\n{tail(proc)}")
    if "127.0.0.1" not in addresses:
        raise CheckFailed(f"lo is down in the container (no 127.0.0.1):\n{tail(proc)}")
    if f"default via {GATEWAY}" not in routes:
        raise CheckFailed(f"no default route via {GATEWAY} in the container:\n{tail(proc)}")
    return f"eth0 {ADDRESS}/{PREFIX}, lo up, default via {GATEWAY}"


def reachable_both_ways(workdir: Path) -> str:
    word = secrets.token_hex(4)
    # A bridge on this host answers in well under a millisecond; 3 s allows for a loaded
    # host, and a wrong solution (no route to the bridge) is not kept waiting 10.
    script = f"ping -c 1 -W 3 {GATEWAY} >&2 && echo {word} | nc -l -p {PORT}"
    with _host() as ns:
        result: dict = {}
        runner = threading.Thread(
            target=lambda: result.update(proc=_run(workdir, ns, script)), daemon=True
        )
        runner.start()
        got, on_bridge = _fetch(ns, runner)
        runner.join()
    proc = result.get("proc")
    if proc is None:
        raise CheckFailed("mini_run did not finish")
    if "1 packets received" not in proc.stderr:
        raise CheckFailed(
            f"the container cannot reach {GATEWAY}, the bridge's address: is the host end of "
            f"the veth on the bridge, and up?\n{tail(proc)}"
        )
    if not on_bridge:
        raise CheckFailed("while the container ran, no interface was on the bridge but itself")
    if got != word:
        raise CheckFailed(
            f"from the host, {ADDRESS}:{PORT} gave {got!r} instead of the container's "
            f"{word!r}:\n{tail(proc)}"
        )
    return f"the container pinged {GATEWAY}; the host read {word!r} from {ADDRESS}:{PORT}"


def _fetch(ns: str, runner: threading.Thread) -> tuple[str | None, bool]:
    """Connect from the lab's host to the container's server until it answers (or the
    container ends); (what it sent, whether a veth was on the bridge meanwhile)."""
    deadline = time.monotonic() + 60
    while runner.is_alive() and time.monotonic() < deadline:
        with netns.entered(ns):
            sock = socket.socket()
        with sock:
            sock.settimeout(5)
            try:
                sock.connect((ADDRESS, PORT))
            except OSError:
                time.sleep(0.2)
                continue
            bridge = _bridge_index(ns)
            on_bridge = any(m == bridge for m in _links(ns).values())
            return sock.makefile().read().strip(), on_bridge
    return None, False


def nothing_left(workdir: Path) -> str:
    with _host() as ns:
        before = set(_links(ns))
        proc = _run(workdir, ns, "true")
        after = set(_links(ns))
    if proc.returncode:
        raise CheckFailed(f"mini_run --net failed with status {proc.returncode}:\n{tail(proc)}")
    if after != before:
        raise CheckFailed(f"after the container ended, the host has {sorted(after - before)} more")
    return "the host's interfaces are as before: the veth went with the container's namespace"


CHECKS = [
    Check(
        "the container has eth0 with its address, lo, and a default route",
        "the child unshares CLONE_NEWNET; the parent moves the veth's peer into it "
        "(net_ns_pid); inside: rename to eth0, address, up, lo up, default route",
        address_and_route,
    ),
    Check(
        "the container and the host reach each other over the bridge",
        "the host end of the veth on the bridge (master=) and up",
        reachable_both_ways,
    ),
    Check(
        "nothing is left on the host when the container ends",
        "the end in the container's namespace goes with it, and takes its peer along",
        nothing_left,
    ),
]
