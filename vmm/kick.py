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

KICK_SIGNAL = signal.SIGUSR1


class VcpuKicker:
    """Signal the thread that called ``start`` every ``interval`` seconds until ``stop``."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous = None

    def start(self) -> None:
        # A handler that does nothing: the signal's only job is to end KVM_RUN.
        self._previous = signal.signal(KICK_SIGNAL, lambda _sig, _frame: None)
        target = threading.get_ident()
        self._thread = threading.Thread(target=self._kick, args=(target,), daemon=True)
        self._thread.start()

    def _kick(self, target: int) -> None:
        while not self._stop.wait(self.interval):
            signal.pthread_kill(target, KICK_SIGNAL)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        signal.signal(KICK_SIGNAL, self._previous)
        self._thread = None
