"""Pausing a running guest, and doing work on its vCPUs' threads while it is paused.

A vCPU is paused by asking ``KVM_RUN`` to return (``immediate_exit`` set, then a kick,
vmm/kvm/kick.py) and having the exit loop's ``on_interrupt`` hook wait on a condition
variable: the thread sleeps in the kernel, so a paused guest uses no CPU. Setting
``immediate_exit`` rather than only signalling matters twice: a kick that lands before
``KVM_RUN`` is entered is not lost, and KVM completes a pending port or MMIO read before
it returns (api.rst, 5: "immediate_exit"), so the registers saved afterwards hold the
value the guest read. While paused, each thread runs the jobs handed to it with
``call``: a snapshot reads each vCPU's state on the vCPU's own thread, as Firecracker does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from vmm.errors import PyvmmError
from vmm.guest_stop import GuestStop
from vmm.kvm import kick

PAUSE_TIMEOUT = 5.0  # seconds a pause may take before the caller gives up


class NotRunning(PyvmmError):
    """The guest has stopped (or not started): nothing to pause, resume or save."""


class PauseGate:
    """The pause switch of a VM's vCPUs, all of them at once. ``install`` before the run;
    ``pause``, ``resume`` and ``call`` from any other thread; ``end`` after the run.

    A pause asks every vCPU to leave ``KVM_RUN`` and returns once each of them waits in
    the gate: a snapshot of several vCPUs is consistent only if none runs while another
    is read (QEMU's ``pause_all_vcpus``). The run ending meanwhile (another vCPU powered
    the guest off) lets the waiting ones go: ``VcpuThreads.on_stopping``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._want_pause = False
        self._paused: set[int] = set()  # indices of the vCPUs waiting in the gate
        self._ended = False
        self._jobs: dict[int, list[tuple[Callable[[], Any], dict]]] = {}
        self._stop: GuestStop | None = None
        self._vcpus: list = []
        self._threads = None

    def install(self, machine) -> None:
        kick.prepare()
        self._vcpus = machine.vcpus
        self._threads = machine.threads
        self._jobs = {vcpu.index: [] for vcpu in machine.vcpus}
        machine.on_interrupt.append(self._on_interrupt)
        machine.threads.on_stopping.append(self._wake)

    @property
    def paused(self) -> bool:
        return bool(self._vcpus) and len(self._paused) == len(self._vcpus)

    def pause(self) -> None:
        """Stop every vCPU and return once all are stopped (at once if they are)."""
        with self._cond:
            if self._ended or not self._vcpus:
                raise NotRunning("the guest is not running")
            # Set even when all are still in the gate: a resume's vCPUs may not have left.
            self._want_pause = True
            if self.paused:
                return
            for vcpu in self._vcpus:
                if vcpu.index not in self._paused:
                    vcpu.request_exit(True)
        self._threads.kick()
        with self._cond:
            if not self._cond.wait_for(lambda: self.paused or self._ended, PAUSE_TIMEOUT):
                raise PyvmmError(f"the vCPUs did not all stop within {PAUSE_TIMEOUT:g} s")
            if not self.paused:
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
        was_paused = self.paused
        self.pause()
        try:
            yield
        finally:
            if not was_paused:
                self.resume()

    def call(self, index: int, job: Callable[[], Any]) -> Any:
        """Run ``job`` on paused vCPU ``index``'s thread and return its result (or raise)."""
        box: dict = {}
        with self._cond:
            if index not in self._paused:
                raise NotRunning("the guest is not paused")
            self._jobs[index].append((job, box))
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

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _on_interrupt(self, vcpu) -> None:
        with self._cond:
            if not self._want_pause:
                return
            jobs = self._jobs[vcpu.index]
            self._paused.add(vcpu.index)
            self._cond.notify_all()
            try:
                while (self._want_pause and not self._threads.stopping) or jobs:
                    if not jobs:
                        self._cond.wait()
                        continue
                    job, box = jobs.pop(0)
                    self._cond.release()
                    try:
                        box["result"] = job()
                    except Exception as e:  # handed to the caller, who reports it
                        box["error"] = e
                    finally:
                        self._cond.acquire()
                    self._cond.notify_all()
            finally:
                self._paused.discard(vcpu.index)
                if not self._threads.stopping:  # else the run's end asked it to exit
                    vcpu.request_exit(False)
            if self._stop is not None:
                raise self._stop
