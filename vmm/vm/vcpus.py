"""Several vCPUs, each in ``KVM_RUN`` on a thread of its own, and stopping them together.

``KVM_RUN`` runs a vCPU on the thread that calls it and blocks for as long as the guest
runs, so N vCPUs need N threads, as in QEMU, Firecracker and kvmtool. They run in
parallel on the host because cffi releases the GIL around every call into C, ``KVM_RUN``
included: a thread inside the guest holds no Python lock, and only the few microseconds
of Python per exit take turns on the GIL (``pyvmm bench vcpus`` measures it: N spinning
vCPUs use N host CPUs).

The boot CPU runs on the calling thread, the others on threads started here. The first
vCPU whose exit loop ends (the guest powered off or reset the machine, or a vCPU failed)
decides the run's result and stops the others: each gets ``immediate_exit`` and a kick
(vmm/kvm/kick.py), so ``KVM_RUN`` returns at once, also if the kick came just before it was
entered, and the loop's interrupt hook (``check``) ends it. Ctrl-C: the vCPU threads
block SIGINT, so the kernel delivers it to the main thread, whose ``KVM_RUN`` returns
EINTR and where Python raises ``KeyboardInterrupt``; the others are stopped the same way
before it goes on up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence


class Stopped(Exception):
    """Raised in a vCPU's exit loop when another vCPU has ended the run."""


class VcpuThreads:
    """Which thread runs which vCPU, for whatever must kick them out of ``KVM_RUN`` (the
    halt watch, ``--profile``, gdb, the end of the run). A thread is added and removed
    under the lock that kicks are sent under, so a kick never goes to a thread that has
    ended (``pthread_kill`` on one is undefined)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads: dict[int, int] = {}  # vCPU index -> threading.get_ident()
        # The run is ending: what holds a vCPU thread outside KVM_RUN (gdb, the pause
        # gate) lets it go; those that wait on a condition are woken by on_stopping.
        self.stopping = False
        self.on_stopping: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def running(self, vcpu):
        """The calling thread runs ``vcpu`` for the duration of the ``with``."""
        with self._lock:
            self._threads[vcpu.index] = threading.get_ident()
        try:
            yield
        finally:
            with self._lock:
                del self._threads[vcpu.index]

    def kick(self, index: int | None = None) -> None:
        """Kick the thread of vCPU ``index``, or of every vCPU but the caller's."""
        # signal is imported where it is used: a boot of one vCPU never kicks, and the
        # module (with the enum it needs) is part of a boot's start-up (tests/test_startup.py).
        from vmm.kvm import kick

        me = threading.get_ident()
        with self._lock:
            for i, thread in self._threads.items():
                if (i == index) if index is not None else thread != me:
                    kick.kick(thread)


class VcpuGroup:
    """Run ``run_vcpu(vcpu)`` for every vCPU at once; the first to return gives the result."""

    def __init__(self, vcpus: Sequence, run_vcpu: Callable[[object], object], threads: VcpuThreads):
        self.vcpus = vcpus
        self.run_vcpu = run_vcpu
        self.threads = threads
        self.result = None
        self._error: BaseException | None = None  # what went wrong on another thread
        self._lock = threading.Lock()
        self._stopping = False

    def run(self):
        from vmm.kvm import kick

        kick.prepare()
        others = [
            threading.Thread(target=self._run_on_thread, args=(v,), name=f"vcpu{v.index}")
            for v in self.vcpus[1:]
        ]
        for thread in others:
            thread.start()
        try:
            self._run(self.vcpus[0])
        finally:
            self.stop(None)
            for thread in others:
                thread.join()
        if self._error is not None:
            raise self._error
        return self.result

    def _run_on_thread(self, vcpu) -> None:
        """A vCPU's loop on a thread of its own; what it raises ends the run for all and
        is raised again on the calling thread, as it would have been with one vCPU."""
        import signal

        # Signals meant for the process as a whole: only the main thread takes them.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            self._run(vcpu)
        except BaseException as e:
            self._error = e
            self.stop(None)

    def _run(self, vcpu) -> None:
        with self.threads.running(vcpu):
            try:
                self.stop(self.run_vcpu(vcpu))
            except Stopped:
                pass

    def check(self, vcpu) -> None:
        """The exit loop's interrupt hook: end this vCPU's loop once the run is over."""
        if self._stopping:
            raise Stopped

    def stop(self, result) -> None:
        """End the run with ``result`` (unless another vCPU gave one first) and get
        every vCPU out of the guest."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self.result = result
        self.threads.stopping = True
        for vcpu in self.vcpus:
            vcpu.request_exit()
        self.threads.kick()
        for wake in self.threads.on_stopping:
            wake()
