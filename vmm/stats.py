"""``--stats``: how many exits of each kind, and where the time went.

Time inside KVM_RUN counts as time in the guest (including KVM's own work); the rest
of the run is the VMM: decoding exits and emulating devices in Python.
"""

from __future__ import annotations

from collections import Counter
from time import perf_counter_ns

GUEST_TOUCHED = "guest memory touched:"  # the line ``pyvmm bench``'s Linux row reads


class ExitStats:
    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.guest_ns = 0
        self._entered = 0
        self._started = perf_counter_ns()
        self._ended = 0

    def before(self) -> None:
        self._entered = perf_counter_ns()

    def after(self, vcpu, exit) -> None:
        now = perf_counter_ns()
        self.guest_ns += now - self._entered
        self._ended = now
        name = type(exit).__name__.removesuffix("Exit").upper()
        if name == "IO":
            name = "IO out" if exit.is_write else "IO in"
        elif name == "MMIO":
            name = "MMIO write" if exit.is_write else "MMIO read"
        self.counts[name] += 1

    def report(
        self, disks: list | None = None, touched: int | None = None, nets: list | None = None
    ) -> str:
        """The table; with ``disks`` (virtio-mmio transports), a line per disk with its
        requests and queue notifications, so "one notify per request" can be checked
        (likewise ``nets``: frames each way, and notifies, which count the TAP's too);
        with ``touched``, the bytes of host memory the guest's RAM came to use (guest
        RAM is an anonymous mapping: only the pages the guest wrote or read are backed)."""
        total = sum(self.counts.values())
        wall = max(self._ended - self._started, 1)
        vmm = wall - self.guest_ns
        rows = [f"{'exit':<12}{'count':>10}"]
        rows += [f"{name:<12}{n:>10}" for name, n in self.counts.most_common()]
        rows.append(f"{'total':<12}{total:>10}")
        rows.append(
            f"time in guest {self.guest_ns / 1e6:.3f} ms ({100 * self.guest_ns / wall:.0f}%), "
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
