"""Namespaces: what the container's processes can see of the host.

A namespace gives its members a private copy of one kind of kernel object: the mount
table (``CLONE_NEWNS``), the hostname (UTS), System V IPC, the network stack, the view
of the cgroup tree, and process ids. ``unshare`` moves the caller into new ones, except
the PID namespace: the caller stays where it is and its next child becomes PID 1 of
the new one. So the runtime unshares PID, forks, and the child (PID 1, the
container's init) unshares the rest for itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from vmm.container.linux._libc import lib
from vmm.container.linux.libc import check

# PID only applies to children (see the module docstring), and the cgroup namespace
# is unshared last, once the process is in its cgroup, so that the container sees
# that cgroup as the root of the tree.
CHILD_FLAGS = lib.CLONE_NEWNS | lib.CLONE_NEWUTS | lib.CLONE_NEWIPC | lib.CLONE_NEWNET


def unshare(flags: int) -> None:
    check(lib.unshare(flags), "unshare")


@contextlib.contextmanager
def pid_namespace_for_children() -> Iterator[None]:
    """Inside the block, the caller's next child is PID 1 of a new PID namespace.

    Afterwards the caller's children are born in its own namespace again: a process
    that starts a second container needs a second new namespace, as the first one's
    init may be gone (and then no process can join it).
    """
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(lib.CLONE_NEWPID)
        yield
    finally:
        check(lib.setns(own, lib.CLONE_NEWPID), "setns")
        os.close(own)


def new_cgroup_namespace() -> None:
    unshare(lib.CLONE_NEWCGROUP)


def set_hostname(name: str) -> None:
    data = name.encode()
    check(lib.sethostname(data, len(data)), "sethostname")


def loopback_up() -> None:
    """Bring up ``lo``: a new network namespace has only a loopback device, and down."""
    check(lib.pyvmm_loopback_up(), "bringing up lo")
