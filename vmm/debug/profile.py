"""``--profile``: where the guest spends its time, by sampling its instruction pointer.

A second thread interrupts the vCPU threads every few milliseconds (vmm/kvm/kick.py);
``KVM_RUN`` returns with EINTR, and the exit loop's hook reads RIP with ``KVM_GET_REGS``
before entering the guest again. Reading the registers from the second thread itself
would not do: a vCPU's ioctls wait for ``KVM_RUN`` to return, so they would only ever
see the guest at its next exit. The addresses are named with the kernel's
``System.map`` (next to the kernel file, as the Linux build leaves it) when there is one.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import Counter
from collections.abc import Callable

from vmm.kvm.kick import VcpuKicker

DEFAULT_INTERVAL = 0.005  # seconds between samples
KERNEL_SPACE = 0xFFFF_8000_0000_0000  # x86-64 canonical upper half: Linux's kernel
# System.map symbol types that are code (nm: T/t text, W/w weak).
CODE_TYPES = frozenset("TtWw")


class SymbolMap:
    """Addresses to ``symbol+offset`` from an nm-style map (``System.map``)."""

    def __init__(self, path: str):
        entries = []
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] in CODE_TYPES:
                    try:
                        entries.append((int(parts[0], 16), parts[2]))
                    except ValueError:
                        continue
        entries.sort()
        self.addresses = [a for a, _ in entries]
        self.names = [n for _, n in entries]

    def name(self, address: int) -> str:
        i = bisect.bisect_right(self.addresses, address) - 1
        return self.names[i] if i >= 0 else f"{address:#x}"


def system_map_for(kernel: str) -> SymbolMap | None:
    path = os.path.join(os.path.dirname(os.path.abspath(kernel)), "System.map")
    try:
        return SymbolMap(path)
    except OSError:
        return None


class RipSampler:
    """``start`` it with the machine's ``threads.kick``, add ``sample`` to its
    ``on_interrupt`` hooks, ``stop`` it after the run and print ``report``."""

    def __init__(self, interval: float = DEFAULT_INTERVAL):
        self.interval = interval
        self.rips: Counter[int] = Counter()
        # Every vCPU thread samples into the one counter: a rip seen for the first time
        # is counted in two steps (Counter's __missing__, then the store), and a thread
        # switch between them loses the other thread's count (measured: 7 of 200000).
        self._lock = threading.Lock()
        self._kicker = VcpuKicker(interval)

    def start(self, kick_vcpus: Callable[[], None]) -> None:
        self._kicker.start(kick_vcpus)

    def sample(self, vcpu) -> None:
        rip = vcpu.get_regs().rip  # an ioctl: outside the lock
        with self._lock:
            self.rips[rip] += 1

    def stop(self) -> None:
        self._kicker.stop()

    def report(self, symbols: SymbolMap | None, top: int = 25) -> str:
        by_place: Counter[str] = Counter()
        for rip, n in self.rips.items():
            if rip < KERNEL_SPACE:
                by_place["(user space)"] += n
            else:
                by_place[symbols.name(rip) if symbols else f"{rip:#x}"] += n
        total = sum(by_place.values())
        if not total:
            return "profile: no samples"
        lines = [f"profile: {total} samples, one every {self.interval * 1e3:.0f} ms of wall time"]
        lines += [
            f"{n * 100 / total:6.1f}%  {n:6}  {place}" for place, n in by_place.most_common(top)
        ]
        return "\n".join(lines)
