"""Network namespaces for the tests: a test "host" of their own, made and removed by the
test, so that nothing of the machine's own network changes."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

import pytest

_names = itertools.count()

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun (TAPs and network namespaces of the test's own)",
)


@contextlib.contextmanager
def netns(bridge: str | None = None, address: str | None = None) -> Iterator[str]:
    """A new named network namespace (its name yielded) with lo up and, if asked, a
    bridge up with ``address`` (CIDR) on it. Removed on the way out, failed test or
    not: the interfaces in it go with it."""
    from pyroute2 import NetNS
    from pyroute2 import netns as pyroute_netns

    name = f"pyvmm-test-{os.getpid()}-{next(_names)}"
    ns = NetNS(name, flags=os.O_CREAT | os.O_EXCL)
    try:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        if bridge is not None:
            ns.link("add", ifname=bridge, kind="bridge")
            index = ns.link_lookup(ifname=bridge)[0]
            if address is not None:
                ip, prefix = address.split("/")
                ns.addr("add", index=index, address=ip, prefixlen=int(prefix))
            ns.link("set", index=index, state="up")
        yield name
    finally:
        ns.close()
        pyroute_netns.remove(name)


def links(name: str) -> dict[str, int | None]:
    """Interface name -> index of its master (None: no master), in namespace ``name``."""
    from pyroute2 import NetNS

    with NetNS(name) as ns:
        return {link.get("ifname"): link.get("master") for link in ns.get_links()}


def in_netns(name: str, argv: list[str]) -> list[str]:
    """``argv`` to run inside namespace ``name`` (util-linux nsenter)."""
    return ["nsenter", f"--net=/run/netns/{name}", *argv]
