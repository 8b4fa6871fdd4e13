"""``--stats``: how many exits of each kind, and where the time went, per vCPU and in all.

Time inside KVM_RUN counts as time in the guest (including KVM's own work); the rest
of the run is the VMM: decoding exits and emulating devices in Python. Each vCPU's
figures are kept apart and touched only by its own thread, so the hooks need no lock.
"""

from __future__ import annotations

from collections import Counter
from time import perf_counter_ns

GUEST_TOUCHED = "guest memory touched:"  # the line ``pyvmm bench``'s Linux row reads


class _VcpuStats:
    __slots__ = ("counts", "guest_ns", "entered")

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.guest_ns = 0
        self.entered = 0


def exit_name(exit) -> str:
    name = type(exit).__name__.removesuffix("Exit").upper()
    if name == "IO":
        return "IO out" if exit.is_write else "IO in"
    if name == "MMIO":
        return "MMIO write" if exit.is_write else "MMIO read"
    return name


class ExitStats:
    def __init__(self, cpus: int = 1):
        self.vcpus = [_VcpuStats() for _ in range(cpus)]
        self._started = perf_counter_ns()
        self._ended = 0

    def before(self, vcpu) -> None:
        self.vcpus[vcpu.index].entered = perf_counter_ns()

    def after(self, vcpu, exit) -> None:
        now = perf_counter_ns()
        mine = self.vcpus[vcpu.index]
        mine.guest_ns += now - mine.entered
        self._ended = now
        mine.counts[exit_name(exit)] += 1

    def report(
        self, disks: list | None = None, touched: int | None = None, nets: list | None = None
    ) -> str:
        """The table, with a column per vCPU when there are several; with ``disks``
        (virtio-mmio transports), a line per disk with its requests and queue
        notifications, so "one notify per request" can be checked (likewise ``nets``:
        frames each way, and notifies, which count the TAP's too); with ``touched``, the
        bytes of host memory the guest's RAM came to use (guest RAM is an anonymous
        mapping: only the pages the guest wrote or read are backed)."""
        counts = sum((v.counts for v in self.vcpus), Counter())
        total = sum(counts.values())
        wall = max(self._ended - self._started, 1)
        several = len(self.vcpus) > 1
        head = "".join(f"{f'vcpu{i}':>10}" for i in range(len(self.vcpus))) if several else ""
        rows = [f"{'exit':<12}{head}{'count' if not several else 'total':>10}"]
        for name, n in counts.most_common():
            each = "".join(f"{v.counts[name]:>10}" for v in self.vcpus) if several else ""
            rows.append(f"{name:<12}{each}{n:>10}")
        each = "".join(f"{sum(v.counts.values()):>10}" for v in self.vcpus) if several else ""
        rows.append(f"{'total':<12}{each}{total:>10}")
        if several:
            for i, v in enumerate(self.vcpus):
                rows.append(
                    f"vcpu{i}: time in guest {v.guest_ns / 1e6:.3f} ms "
                    f"({100 * v.guest_ns / wall:.0f}% of the run)"
                )
        else:
            guest_ns = self.vcpus[0].guest_ns
            vmm = wall - guest_ns
            rows.append(
                f"time in guest {guest_ns / 1e6:.3f} ms ({100 * guest_ns / wall:.0f}%), "
                f"in the VMM {vmm / 1e6:.3f} ms ({100 * vmm / wall:.0f}%)"
                + (f", {wall / total / 1e3:.1f} us per exit" if total else "")
            )
        for i, disk in enumerate(disks or ()):
            rows.append(
                f"virtio disk {i}: {disk.device.requests} requests, {disk.notifies} queue notifies"
            )
        for i, net in enumerate(nets or ()):
            card = net.device
            rows.append(
                f"virtio net {i}: {card.tx_frames} frames sent ({card.tx_dropped} dropped), "
                f"{card.rx_frames} received ({card.rx_dropped} dropped), "
                f"{net.notifies} queue notifies"
            )
        if touched is not None:
            rows.append(f"{GUEST_TOUCHED} {touched // 1024} KiB")
        return "\n".join(rows)
