"""Pausing a running guest, and doing work on the vCPU's thread while it is paused.

A vCPU is paused by asking ``KVM_RUN`` to return (``immediate_exit`` set, then a kick,
vmm/kick.py) and having the exit loop's ``on_interrupt`` hook wait on a condition
variable: the thread sleeps in the kernel, so a paused guest uses no CPU. Setting
``immediate_exit`` rather than only signalling matters twice: a kick that lands before
``KVM_RUN`` is entered is not lost, and KVM completes a pending port or MMIO read before
it returns (api.rst, 5: "immediate_exit"), so the registers saved afterwards hold the
value the guest read. While paused, the thread runs the jobs handed to it with ``call``:
a snapshot reads the vCPU's state on the vCPU's own thread, as Firecracker does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from vmm import kick
from vmm.devices.power import GuestStop
from vmm.errors import PyvmmError

PAUSE_TIMEOUT = 5.0  # seconds a pause may take before the caller gives up


class NotRunning(PyvmmError):
    """The guest has stopped (or not started): nothing to pause, resume or save."""


class PauseGate:
    """One vCPU's pause switch. ``install`` on the vCPU's thread before the run;
    ``pause``, ``resume`` and ``call`` from any other thread; ``end`` after the run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._want_pause = False
        self._paused = False
        self._ended = False
        self._jobs: list[tuple[Callable[[], Any], dict]] = []
        self._stop: GuestStop | None = None
        self._vcpu = None
        self._thread = 0

    def install(self, machine) -> None:
        kick.prepare()
        self._vcpu = machine.vcpu
        self._thread = threading.get_ident()
        machine.on_interrupt.append(self._on_interrupt)

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop the vCPU and return once it is stopped (at once if it already is)."""
        with self._cond:
            if self._ended or self._vcpu is None:
                raise NotRunning("the guest is not running")
            if self._paused:
                return
            self._want_pause = True
            self._vcpu.request_exit(True)
        kick.kick(self._thread)
        with self._cond:
            if not self._cond.wait_for(lambda: self._paused or self._ended, PAUSE_TIMEOUT):
                raise PyvmmError(f"the vCPU did not stop within {PAUSE_TIMEOUT:g} s")
            if not self._paused:
                raise NotRunning("the guest stopped")

    def resume(self) -> None:
        with self._cond:
            if self._ended:
                raise NotRunning("the guest is not running")
            self._want_pause = False
            self._cond.notify_all()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Paused for the block; running afterwards only if it was running before."""
        was_paused = self._paused
        self.pause()
        try:
            yield
        finally:
            if not was_paused:
                self.resume()

    def call(self, job: Callable[[], Any]) -> Any:
        """Run ``job`` on the paused vCPU's thread and return its result (or raise)."""
        box: dict = {}
        with self._cond:
            if not self._paused:
                raise NotRunning("the guest is not paused")
            self._jobs.append((job, box))
            self._cond.notify_all()
            self._cond.wait_for(lambda: box or self._ended)
        if "error" in box:
            raise box["error"]
        if "result" not in box:
            raise NotRunning("the guest stopped")
        return box["result"]

    def stop(self, status: int, reason: str) -> None:
        """End the paused guest's run (it went elsewhere) with ``status``."""
        with self._cond:
            self._stop = GuestStop(status, reason)
            self._want_pause = False
            self._cond.notify_all()

    def end(self) -> None:
        """The run is over: wake anyone waiting for a pause or a job."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _on_interrupt(self, vcpu) -> None:
        with self._cond:
            if not self._want_pause:
                return
            self._paused = True
            self._cond.notify_all()
            try:
                while self._want_pause or self._jobs:
                    if not self._jobs:
                        self._cond.wait()
                        continue
                    job, box = self._jobs.pop(0)
                    self._cond.release()
                    try:
                        box["result"] = job()
                    except Exception as e:  # handed to the caller, who reports it
                        box["error"] = e
                    finally:
                        self._cond.acquire()
                    self._cond.notify_all()
            finally:
                self._paused = False
                vcpu.request_exit(False)
            if self._stop is not None:
                raise self._stop
