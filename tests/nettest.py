"""Network tests' common ground: when they can run, and what a namespace holds."""

from __future__ import annotations

import os

import pytest

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="needs root and /dev/net/tun (TAPs and network namespaces of the test's own)",
)


def links(name: str) -> dict[str, int | None]:
    """Interface name -> index of its master (None: no master), in namespace ``name``."""
    from pyroute2 import NetNS

    with NetNS(name) as ns:
        return {link.get("ifname"): link.get("master") for link in ns.get_links()}
