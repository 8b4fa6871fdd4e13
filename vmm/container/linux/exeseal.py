"""No host executable within a container's reach (runc's CVE-2019-5736).

Every pyvmm process that enters a container (the init ``init.spawn`` forks, for
both front ends, the process ``init.join`` execs for ``exec``, the hooks
the init runs) is the host's Python interpreter until its execve. A process in the
container that opens its ``/proc/<pid>/exe`` holds the host's interpreter; kept open
until no process runs that binary, the descriptor can write it, and every later
``python3`` on the host runs the container's code. Two ways in, two defences:

- **The window before execve.** Such a process is made non-dumpable (``PR_SET_DUMPABLE``
  0) before it joins anything (``nondumpable``), as runc's nsexec does; execve makes
  the new program dumpable again. ``/proc/<pid>/exe``, ``fd/``, ``cwd``, ``root``
  and ptrace then need ``CAP_SYS_PTRACE`` in the user namespace the interpreter was
  started in: the host's. (Until the capabilities are dropped, the kernel's
  commoncap rule already refuses a caller holding fewer capabilities than the target;
  non-dumpable covers the last steps after the drop.)
- **The execve itself.** A ``#!/proc/self/exe`` script in the image makes the kernel
  resolve ``/proc/self/exe`` *during* pyvmm's execve, where it is still the host's
  interpreter: the container then runs it, dumpable, with its own code. So pyvmm never
  calls execve into a container from Python: it execs ``pyvmm-exec`` (a static
  program of a few hundred bytes, ``exec_trampoline.c``) from a sealed memfd
  (``Trampoline``), which execs the container's program. ``/proc/self/exe`` at that
  moment is the sealed copy, which no one can write; it refuses to run again as a
  script's interpreter.

Which of runc's answers and why: runc first (1.0-rc6) re-executed all of ``runc
init`` from a sealed memfd copy of the runc binary (trying a read-only bind mount of
it first, "bindfd", from 1.0-rc7 until 2023), then (1.2.0-rc.1) ``runc-dmz``, a tiny
C program cloned into a memfd for the last execve, with the copy of all of runc kept
only for containers that could get past non-dumpable, and now (1.2) a private
overlayfs mount of the runc binary (``libcontainer/exeseal``). pyvmm's processes are
Python: re-executing the interpreter from a copy costs a second interpreter start
with pyvmm's imports (some 0.2 s) on every container start, where the dmz way costs
a 2 kB memfd (some 13 us). So pyvmm takes runc-dmz's way, non-dumpable plus a sealed
trampoline, and, as runc-dmz did, keeps the copy for the one case non-dumpable does
not cover: a process that may hold ``CAP_SYS_PTRACE`` in the host's user namespace
(no user namespace of its own and the capability in a set it can reach, or one in a
PID namespace joined from elsewhere) in the PID namespace pyvmm's processes enter.
Then ``pyvmm-runtime`` re-executes itself from a sealed memfd copy of the interpreter
before it does anything (``reexec_sealed``), so that its ``/proc/self/exe`` is never
the host's file. (A fresh PID namespace holds nobody until the init's execve: ``pyvmm
container run`` never needs it.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from vmm.container.linux._libc import lib
from vmm.container.linux.libc import prctl

PROGRAM = Path(__file__).with_name("pyvmm-exec")  # built from exec_trampoline.c by setup.py
# memfd_create(2) "File sealing": nothing may change the copy once it is made.
SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
# runc's mode for its sealed copies: executable by all, readable by its owner only
# (an exec by another user is then non-dumpable: setup_new_exec's "would_dump").
MODE = 0o511
_ENV_SEALED = "_PYVMM_SEALED"  # set across ``reexec_sealed``'s execve


def _sealed_copy(name: str, source: int) -> int:
    """A close-on-exec, sealed memfd holding what the fd ``source`` holds."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        size = os.fstat(source).st_size
        offset = 0
        while offset < size:
            offset += os.sendfile(fd, source, offset, size - offset) or size
        os.fchmod(fd, MODE)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Trampoline:
    """``pyvmm-exec`` in a sealed memfd: made while the package's files are in reach
    (before pivot_root or the mount namespace is joined), used for every execve into
    the container (``execve``) and for the hooks the init runs (``command``)."""

    def __init__(self) -> None:
        with open(PROGRAM, "rb") as f:
            self.fd = _sealed_copy("pyvmm-exec", f.fileno())

    def execve(self, path: str, args: list[str], env: dict[str, str],
               report: int | None = None) -> NoReturn:  # fmt: skip
        """Exec ``path`` with ``args`` through the trampoline (the memfd is closed by
        the exec itself: close-on-exec); if that exec fails, "STATUS\\nPATH: REASON"
        is written to ``report`` (else to stderr). Raises only if the trampoline
        itself could not run."""
        if report is not None:
            os.set_inheritable(report, True)  # the trampoline makes it close-on-exec again
        os.execve(self.fd, [str(-1 if report is None else report), path, *args], env)
        raise AssertionError("unreachable")  # os.execve returns only by raising

    def command(self, path: str, args: list[str]) -> tuple[str, list[str]]:
        """(executable, argv) that run ``path`` with ``args`` through the trampoline
        from a child that inherits the memfd (``pass_fds``): it is close-on-exec again
        for the hook."""
        return f"/proc/self/fd/{self.fd}", [str(self.fd), path, *args]

    def close(self) -> None:
        os.close(self.fd)


@contextlib.contextmanager
def nondumpable() -> Iterator[None]:
    """This process non-dumpable for the ``with`` block: a child forked meanwhile (into
    a container's PID namespace) is so from its first instant until its execve, even
    when it leaves the block itself."""
    parent = os.getpid()
    prctl(lib.PR_SET_DUMPABLE, 0)
    try:
        yield
    finally:
        if os.getpid() == parent:
            prctl(lib.PR_SET_DUMPABLE, 1)


def make_nondumpable() -> None:
    """For good (until execve): the first thing a child does before it joins anything."""
    prctl(lib.PR_SET_DUMPABLE, 0)


def ptrace_reaches(capability_sets: list[list[str]] | None, userns: bool) -> bool:
    """Whether processes may hold ``CAP_SYS_PTRACE`` in the host's user namespace,
    where non-dumpable stops nothing (runc's ``isDmzBinarySafe``): those given
    ``capability_sets`` (every set, bounding to ambient: an image's file capabilities
    reach the bounding set; None when there is no capabilities object), in a user
    namespace of their own or not (``userns``)."""
    if userns:  # their capabilities are the user namespace's (Linux 4.10, bfedb589252c)
        return False
    if capability_sets is None:  # no capabilities object: root keeps every capability
        return True
    return any("CAP_SYS_PTRACE" in names for names in capability_sets)


def is_sealed() -> bool:
    """Whether this process already runs from a sealed copy."""
    try:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS == SEALS
    except OSError:  # not a memfd
        return False
    finally:
        os.close(fd)


def reexec_sealed() -> None:
    """Start this command again, the same arguments, environment and descriptors, from
    a sealed memfd copy of the interpreter; returns only if it already runs from one.
    Call it before the command has made anything."""
    if is_sealed():
        os.environ.pop(_ENV_SEALED, None)
        return
    if os.environ.get(_ENV_SEALED):  # the copy is not sealed: never loop
        raise OSError("pyvmm: cannot run from a sealed copy of the interpreter")
    with open("/proc/self/exe", "rb") as f:
        fd = _sealed_copy("pyvmm-python", f.fileno())
    sys.stdout.flush()
    sys.stderr.flush()
    # argv[0] names the interpreter by its path: Python finds its prefix (and a venv)
    # from it, as /proc/self/exe is now the copy.
    argv = [sys.executable or sys.orig_argv[0], *sys.orig_argv[1:]]
    os.execve(fd, argv, {**os.environ, _ENV_SEALED: "1"})
