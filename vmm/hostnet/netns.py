"""A network namespace of one's own: the "test host" that the network tests and
``pyvmm bench net`` build, so that nothing of the machine's own network changes and
all traffic stays between addresses they made.

The namespace is named (a bind mount under /run/netns, as ``ip netns add`` makes), so
that child processes (pyvmm, QEMU, busybox) are started in it with ``nsenter --net``
and sockets of this process are made in it with ``entered``. Everything made in it
(bridges, TAPs, addresses) goes when it is removed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

_serial = itertools.count()


@contextlib.contextmanager
def scratch(bridge: str | None = None, address: str | None = None) -> Iterator[str]:
    """A new namespace (its name yielded) with lo up and, if asked, a bridge up with
    ``address`` (CIDR) on it; removed on the way out, whatever happened inside."""
    from pyroute2 import NetNS
    from pyroute2 import netns as pyroute_netns

    name = f"pyvmm-{os.getpid()}-{next(_serial)}"
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


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """This thread inside namespace ``name``: sockets made here stay in it after."""
    from pyroute2 import netns as pyroute_netns

    pyroute_netns.pushns(name)
    try:
        yield
    finally:
        pyroute_netns.popns()


def command(name: str, argv: list[str]) -> list[str]:
    """``argv`` to run inside namespace ``name`` (util-linux nsenter)."""
    return ["nsenter", f"--net=/run/netns/{name}", *argv]
