#!/usr/bin/env python3
"""The Python data plane of virtio-net alone: microseconds per frame through the
transport and the device, with no guest and no KVM (tests/virtio_driver.py's NetRig:
the driver's rings in real memory, a SOCK_SEQPACKET pair standing in for the TAP).

    .venv/bin/python scripts/bench_virtio_net.py [--frames 20000] [--size 1514]

Transmit: a batch of frames made available, one notify, the device writes each to the
fd (as a guest that queues several frames before its kick). Receive: frames waiting on
the fd, one notify (the I/O thread's wake-up), the device reads each into a posted
buffer. Figures are per frame, medians of 5 runs; what the guest's side costs is not in
them (docs/networking.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from virtio_driver import NetRig  # noqa: E402

from vmm.devices.virtio import mmio  # noqa: E402
from vmm.devices.virtio.net import VIRTIO_NET_F_MAC, VIRTIO_NET_HDR_SIZE  # noqa: E402

BATCH = 64  # frames per notify: a quarter of Linux's 256-entry ring


def per_frame_us(frames: int, size: int, receive: bool) -> float:
    rig = NetRig(queue_size=BATCH * 2)
    rig.bring_up(VIRTIO_NET_F_MAC | mmio.VIRTIO_F_VERSION_1)
    frame = bytes(VIRTIO_NET_HDR_SIZE + size)
    ring = rig.rx if receive else rig.tx
    buffers = [ring.alloc(len(frame), frame) for _ in range(BATCH)]
    elapsed = 0.0
    try:
        for _ in range(frames // BATCH):
            for addr in buffers:
                ring.publish(ring.chain([(addr, len(frame), receive)]))
            if receive:
                for _ in range(BATCH):
                    rig.wire.send(frame)
            t = time.perf_counter()
            rig.transport.notify(0 if receive else 1)
            elapsed += time.perf_counter() - t
            assert len(ring.used()) == BATCH
            if not receive:
                for _ in range(BATCH):
                    rig.wire.recv(65536)
    finally:
        rig.close()
    return elapsed / (frames // BATCH * BATCH) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1514, help="Ethernet frame bytes")
    args = parser.parse_args()
    for name, receive in (("transmit", False), ("receive", True)):
        runs = [per_frame_us(args.frames, args.size, receive) for _ in range(5)]
        spread = f"min {min(runs):.1f}, max {max(runs):.1f}, {args.frames} frames x 5 runs"
        print(f"{name:<9} {statistics.median(runs):6.1f} us per {args.size}-byte frame ({spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
