"""Lab 29's checks: the student's tiny-kernel driver (guest/kernel/virtio_net.c) puts one
Ethernet frame on the transmit queue, which pyvmm's virtio-net device hands to a TAP, and
takes from the receive queue a frame the check sent into that TAP.

The check makes a network namespace of its own (vmm/hostnet/netns.py) holding one TAP, listens
on it with a packet socket for frames of the lab's ethertype, boots the student's kernel
on that TAP with a MAC of the check's choosing, and answers the kernel's frame with one
carrying a fresh word. Nothing of the machine's own network is touched, and the
namespace goes with everything in it.
"""

import re
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, build_guest, once, run_student, tail
from vmm.hostnet import netns

TITLE = "A virtio-net frame, end to end"
CONCEPT = "a frame in guest memory, a descriptor, the available ring, a notify; a TAP's fd"
NEEDS = ("kvm", "root")
FILES = ("../../guest/kernel/virtio_net.c",)
TAP = "lab29"
ETH_P_LAB = 0x88B5  # virtio_net.c's ETH_P_LAB
ETH_P_ALL = 0x0003  # include/uapi/linux/if_ether.h: a packet socket that sees every frame
HELLO = b"hello from the tiny kernel"
# pyvmm boot --stats: what the device did with the chains it was given (vmm/debug/stats.py).
_STATS = re.compile(r"virtio net 0: (\d+) frames sent \((\d+) dropped\), (\d+) received")
BROADCAST = b"\xff" * 6
WIRE_MAC = bytes.fromhex("020000000029")  # the check's end of the wire: local, unicast


@dataclass
class Run:
    proc: object
    mac: bytes
    word: str
    frames: list[bytes] = field(default_factory=list)  # from the card's MAC, seen on the TAP


def _run(workdir: Path) -> Run:
    files = {"kernel/virtio_net.c": workdir / "virtio_net.c"}
    build = build_guest(workdir, files, ["build/kernel.elf", "build/hello"])
    from pyroute2 import NetNS

    run = Run(None, bytes.fromhex("525400") + secrets.token_bytes(3), secrets.token_hex(4))
    with netns.scratch() as ns:
        with NetNS(ns) as ipr:
            ipr.link("add", ifname=TAP, kind="tuntap", mode="tap")
            ipr.link("set", index=ipr.link_lookup(ifname=TAP)[0], state="up")
        with netns.entered(ns):
            wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with wire:
            wire.bind((TAP, ETH_P_ALL))
            wire.settimeout(0.5)
            stop = threading.Event()
            answerer = threading.Thread(target=_answer, args=(wire, run, stop), daemon=True)
            answerer.start()
            mac = run.mac.hex(":")
            argv = netns.command(ns, [sys.executable, "-m", "vmm", "boot",
                                      "--kernel", str(build / "kernel.elf"),
                                      "--program", str(build / "hello"),
                                      "--net", f"tap={TAP},mac={mac}", "--cmdline", "net_hello",
                                      "--stats"])  # fmt: skip
            try:
                run.proc = run_student(argv, workdir, timeout=60)
            finally:
                stop.set()
                answerer.join()
    return run


def _answer(wire: socket.socket, run: Run, stop: threading.Event) -> None:
    """Keep the frames the TAP carries out of the guest from the card's MAC (the host's
    own go the other way); answer the first with "pong WORD" to that MAC."""
    while not stop.is_set():
        try:
            frame = wire.recv(65536)
        except TimeoutError:
            continue
        if frame[6:12] != run.mac:
            continue
        run.frames.append(frame)
        if len(run.frames) == 1:
            reply = f"pong {run.word}".encode()
            wire.send(run.mac + WIRE_MAC + ETH_P_LAB.to_bytes(2, "big") + reply)


def _boot(workdir: Path) -> Run:
    return once(workdir, ("virtio_net.c",), lambda: _run(workdir))


def frame_reaches_the_tap(workdir: Path) -> str:
    run = _boot(workdir)
    if b"virtio-net: eth0 " + run.mac.hex(":").encode() not in run.proc.stdout.encode():
        raise CheckFailed(f"the kernel did not find the card (not your part):\n{tail(run.proc)}")
    stats = _STATS.search(run.proc.stderr)
    if not stats:
        raise CheckFailed(f"pyvmm printed no device statistics (not your code):\n{tail(run.proc)}")
    sent, dropped = int(stats[1]), int(stats[2])
    if not run.frames and dropped:
        raise CheckFailed(
            f"the device took {dropped} chain(s) from transmitq1 and the TAP refused them: the "
            f"12-byte virtio_net_hdr must come first (the TUN driver reads it), the frame after"
        )
    if not run.frames:
        raise CheckFailed(
            f"no frame from the card's MAC on the TAP ({sent} sent): was the buffer on the "
            f"available ring, avail.idx moved on, and the queue notified?\n{tail(run.proc)}"
        )
    frame = run.frames[0]
    want = BROADCAST + run.mac + ETH_P_LAB.to_bytes(2, "big") + HELLO
    if frame[: len(want)] != want:
        raise CheckFailed(
            f"the TAP carried {frame[:40].hex(' ')} ...; expected {want[:20].hex(' ')} ... "
            f"(to ff:ff:ff:ff:ff:ff, from the card's MAC, type {ETH_P_LAB:#06x} in network "
            f"byte order, then {HELLO.decode()!r}): the 12-byte virtio_net_hdr must come "
            f"first, and the frame right after it"
        )
    return f"a {len(want)}-byte frame from {run.mac.hex(':')} reached the TAP, its header read"


def frame_reaches_the_kernel(workdir: Path) -> str:
    run = _boot(workdir)
    said = f'from {WIRE_MAC.hex(":")}: "pong {run.word}"'
    if said not in run.proc.stdout:
        raise CheckFailed(
            f"the check sent the card 'pong {run.word}' and the kernel did not print it: was "
            f"the receive buffer posted device-writable, and receiveq1 notified?\n{tail(run.proc)}"
        )
    if run.proc.returncode != 0:
        raise CheckFailed(f"pyvmm exited {run.proc.returncode}:\n{tail(run.proc)}")
    return f"'pong {run.word}' came back through receiveq1, and the run ends with status 0"


CHECKS = [
    Check(
        "the kernel's frame leaves through transmitq1 and reaches the TAP",
        "descriptor 0 -> the frame (virtio_net_hdr first), its index in avail.ring, "
        "avail.idx + 1, then QueueNotify = 1",
        frame_reaches_the_tap,
    ),
    Check(
        "a frame sent to the card arrives in the kernel's receive buffer",
        "a receive buffer is device-writable (VIRTQ_DESC_F_WRITE), posted on queue 0",
        frame_reaches_the_kernel,
    ),
]
