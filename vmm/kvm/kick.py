"""Getting the vCPU out of ``KVM_RUN`` every so often, from a second thread.

A vCPU's ioctls wait while ``KVM_RUN`` runs, so another thread cannot look at a running
guest directly. It can send the vCPU's thread a signal: ``KVM_RUN`` then returns EINTR
(``InterruptedExit``), the exit loop's hooks look (``KVM_GET_REGS``...), and the loop
enters the guest again. ``--profile`` samples RIP this way; a Linux guest's halt with
interrupts off (its power-off without ACPI) is noticed this way.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

KICK_SIGNAL = signal.SIGUSR1


def prepare() -> None:
    """Make kicks harmless to the process: a handler that does nothing, its only job to
    end ``KVM_RUN`` with EINTR. Installed once and never restored, so that the several
    users of kicks (the halt watch, ``--profile``, gdb's Ctrl-C) cannot undo each other's
    handler and let a late kick kill pyvmm. Call it on the main thread."""
    if signal.getsignal(KICK_SIGNAL) is not _ignore:
        signal.signal(KICK_SIGNAL, _ignore)


def _ignore(_sig, _frame) -> None:
    pass


def kick(thread: int) -> None:
    """Send the thread ``thread`` (a ``threading.get_ident``) out of ``KVM_RUN``."""
    signal.pthread_kill(thread, KICK_SIGNAL)


class VcpuKicker:
    """Call ``kick_vcpus`` (which signals the vCPU threads: ``Machine.threads.kick``)
    every ``interval`` seconds from a thread of its own, until ``stop``."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, kick_vcpus: Callable[[], None]) -> None:
        prepare()
        self._thread = threading.Thread(target=self._kick, args=(kick_vcpus,), daemon=True)
        self._thread.start()

    def _kick(self, kick_vcpus: Callable[[], None]) -> None:
        while not self._stop.wait(self.interval):
            kick_vcpus()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
