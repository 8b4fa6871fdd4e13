"""virtio-net end to end without KVM: registers, both rings, a real packet fd standing
in for the TAP, and hostile drivers (too-large frames, loops, addresses off the end)."""

from __future__ import annotations

import struct

import pytest
from virtio_driver import NET_MEMORY_SIZE, NetRig

from vmm.devices.virtio import mmio
from vmm.devices.virtio.net import (
    MAX_FRAME,
    VIRTIO_ID_NET,
    VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_HDR_SIZE,
    NetOption,
    default_mac,
    parse_net_option,
)
from vmm.devices.virtio.virtqueue import VIRTQ_DESC_F_NEXT, VIRTQ_USED_F_NO_NOTIFY
from vmm.errors import PyvmmError

HDR = VIRTIO_NET_HDR_SIZE
RX, TX = 0, 1
GUARD = b"\xa5" * 16  # after a receive buffer: must survive any frame


def frame(n: int, seed: int = 0) -> bytes:
    """A header (all zero: no offload asked) and an n-byte Ethernet frame, every byte
    telling its place, so a frame copied to the wrong place shows."""
    return bytes(HDR) + bytes((seed + i * 7) & 0xFF for i in range(n))


@pytest.fixture
def rig():
    rig = NetRig()
    yield rig
    rig.close()


def bring_up_plain(rig: NetRig) -> None:
    """A driver that takes no offload and no mergeable buffers: one frame, one buffer."""
    rig.bring_up(VIRTIO_NET_F_MAC | mmio.VIRTIO_F_VERSION_1)


def post_rx(rig: NetRig, size: int) -> int:
    """One receive buffer of ``size`` bytes followed by guard bytes; returns its address."""
    addr = rig.rx.alloc(size + len(GUARD), bytes(size) + GUARD)
    rig.driver.submit([(addr, size, True)], RX, rig.rx)
    return addr


def send(rig: NetRig, buffers) -> list[tuple[int, int]]:
    rig.driver.submit(buffers, TX, rig.tx)
    return rig.tx.used()


def test_device_offers_mac_offloads_and_mergeable_buffers_and_shows_its_mac(rig):
    assert rig.driver.reg(mmio.VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_NET
    features = rig.driver.device_features()
    for bit in (VIRTIO_NET_F_MAC, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_TSO4):
        assert features & bit
    assert features & VIRTIO_NET_F_MRG_RXBUF
    assert rig.transport.read(mmio.VIRTIO_MMIO_CONFIG, 6) == bytes.fromhex("525400abcdef")
    assert rig.driver.reg(mmio.VIRTIO_MMIO_QUEUE_NUM_MAX) == 16


def test_offload_off_offers_the_mac_alone():
    rig = NetRig(offload=False)
    try:
        assert rig.driver.device_features() == VIRTIO_NET_F_MAC | mmio.TRANSPORT_FEATURES
    finally:
        rig.close()


def test_tap_offloads_follow_the_features_the_driver_took(rig):
    bring_up_plain(rig)
    assert rig.offloads[-1] == (False, False, False)
    rig.driver.set(mmio.VIRTIO_MMIO_STATUS, 0)
    rig.bring_up(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | mmio.VIRTIO_F_VERSION_1)
    assert rig.offloads[-1] == (True, True, False)
    rig.driver.set(mmio.VIRTIO_MMIO_STATUS, 0)  # a reset takes them back
    assert rig.offloads[-1] == (False, False, False)


def test_transmitted_frame_reaches_the_tap_whole_with_its_header(rig):
    rig.bring_up()
    data = frame(1000, seed=3)
    head_addr = rig.tx.alloc(HDR + 100, data[: HDR + 100])
    rest_addr = rig.tx.alloc(len(data) - HDR - 100, data[HDR + 100 :])
    used = send(rig, [(head_addr, HDR + 100, False), (rest_addr, len(data) - HDR - 100, False)])
    assert len(used) == 1 and used[0][1] == 0  # 5.1.6.2: nothing written to a tx buffer
    assert rig.wire.recv(70000) == data
    assert rig.net.tx_frames == 1 and rig.interrupts == 1


@pytest.mark.parametrize(
    "case",
    ["shorter than header and Ethernet header", "a device-writable part", "outside memory"],
)
def test_bad_transmit_chain_is_dropped_and_the_card_goes_on(rig, case):
    rig.bring_up()
    if case == "shorter than header and Ethernet header":
        bad = [(rig.tx.alloc(HDR + 13), HDR + 13, False)]
    elif case == "a device-writable part":
        bad = [(rig.tx.alloc(HDR + 60), HDR + 60, False), (rig.tx.alloc(8), 8, True)]
    else:
        bad = [(rig.tx.alloc(HDR), HDR, False), (NET_MEMORY_SIZE - 8, 64, False)]
    used = send(rig, bad)
    assert len(used) == 1  # the chain comes back: the driver can reuse its buffers
    assert rig.net.tx_dropped == 1
    good = frame(60)
    send(rig, [(rig.tx.alloc(len(good), good), len(good), False)])
    assert rig.wire.recv(70000) == good  # the bad one never reached the wire
    assert not rig.driver.status & mmio.VIRTIO_CONFIG_S_NEEDS_RESET


def test_received_frame_lands_in_the_buffer_with_num_buffers_one(rig):
    bring_up_plain(rig)
    addr = post_rx(rig, HDR + MAX_FRAME)
    data = frame(MAX_FRAME, seed=5)
    rig.wire.send(data)
    rig.transport.notify(RX)  # what the I/O thread does when the TAP is readable
    assert rig.rx.used() == [(0, len(data))]
    got = rig.memory.read(addr, len(data))
    assert got[HDR:] == data[HDR:]
    assert struct.unpack_from("<H", got, 10)[0] == 1  # num_buffers
    assert rig.memory.read(addr + HDR + MAX_FRAME, len(GUARD)) == GUARD
    assert rig.net.rx_frames == 1 and rig.interrupts >= 1


def test_frame_larger_than_its_buffer_is_dropped_and_nothing_written_past_it(rig):
    bring_up_plain(rig)
    small = post_rx(rig, HDR + 100)
    rig.wire.send(frame(1400))
    rig.transport.notify(RX)
    assert rig.rx.used() == [(0, 0)]  # given back empty: the driver drops it
    assert rig.memory.read(small + HDR + 100, len(GUARD)) == GUARD
    assert rig.net.rx_dropped == 1
    addr = post_rx(rig, HDR + MAX_FRAME)
    rig.wire.send(frame(200, seed=9))
    rig.transport.notify(RX)
    (element,) = rig.rx.used()
    assert element[1] == HDR + 200
    assert rig.memory.read(addr + HDR, 200) == frame(200, seed=9)[HDR:]


def test_mergeable_buffers_carry_a_frame_across_chains_with_num_buffers(rig):
    features = rig.bring_up(VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | mmio.VIRTIO_F_VERSION_1)
    assert features & VIRTIO_NET_F_MRG_RXBUF
    addrs = [post_rx(rig, 512) for _ in range(4)]  # 2048 bytes: room for the largest frame
    data = frame(1200, seed=1)
    rig.wire.send(data)
    rig.transport.notify(RX)
    used = rig.rx.used()
    assert [length for _, length in used] == [512, 512, HDR + 1200 - 1024]
    got = b"".join(rig.memory.read(a, 512) for a in addrs[:3])[: len(data)]
    assert got[HDR:] == data[HDR:]
    assert struct.unpack_from("<H", got, 10)[0] == 3
    # The fourth chain is held for the next frame; it fills once there is room again.
    post_rx(rig, 512)
    post_rx(rig, 512)
    post_rx(rig, 512)
    rig.wire.send(frame(100, seed=2))
    rig.transport.notify(RX)
    assert rig.rx.used() == [(3, HDR + 100)]
    assert rig.memory.read(addrs[3] + HDR, 100) == frame(100, seed=2)[HDR:]


def test_idle_receive_queue_keeps_driver_notifications_off_and_starved_turns_them_on(rig):
    bring_up_plain(rig)
    used_flags = rig.rx.used_addr
    post_rx(rig, HDR + MAX_FRAME)
    # Buffers, no frame: the device waits on the TAP, not on the driver.
    assert rig.memory.read_u16(used_flags) == VIRTQ_USED_F_NO_NOTIFY
    rig.wire.send(frame(60))
    rig.wire.send(frame(61))
    rig.transport.notify(RX)
    assert len(rig.rx.used()) == 1
    # A frame waits and there is no buffer: the driver's next buffer must be heard of.
    assert rig.memory.read_u16(used_flags) == 0
    post_rx(rig, HDR + MAX_FRAME)  # its QueueNotify brings the waiting frame in
    assert [length for _, length in rig.rx.used()] == [HDR + 61]


def test_receive_chain_that_loops_puts_the_card_in_needs_reset(rig):
    bring_up_plain(rig)
    ring = rig.rx
    addr = ring.alloc(64)
    ring.write_desc(ring.desc_addr, 0, addr, 32, VIRTQ_DESC_F_NEXT | 2, 1)
    ring.write_desc(ring.desc_addr, 1, addr + 32, 32, VIRTQ_DESC_F_NEXT | 2, 0)
    ring.publish(0)
    rig.wire.send(frame(60))
    rig.transport.notify(RX)
    assert rig.driver.status & mmio.VIRTIO_CONFIG_S_NEEDS_RESET


def test_receive_buffer_outside_memory_comes_back_empty_and_the_frame_waits(rig):
    bring_up_plain(rig)
    rig.driver.submit([(NET_MEMORY_SIZE - 16, HDR + MAX_FRAME, True)], RX, rig.rx)
    addr = post_rx(rig, HDR + MAX_FRAME)
    data = frame(80, seed=4)
    rig.wire.send(data)
    rig.transport.notify(RX)
    assert rig.rx.used() == [(0, 0), (1, len(data))]
    assert rig.memory.read(addr + HDR, 80) == data[HDR:]


@pytest.mark.parametrize(
    "text, option",
    [
        ("tap=tap0", NetOption(tap="tap0")),
        ("bridge=br0,offload=off", NetOption(bridge="br0", offload=False)),
        ("tap=t,mac=52:54:00:01:02:03", NetOption(tap="t", mac=bytes.fromhex("525400010203"))),
        ("bridge=br0,vhost=on", NetOption(bridge="br0", vhost=True)),
        ("tap=t,vhost=off", NetOption(tap="t")),
    ],
)
def test_net_option_parses(text, option):
    assert parse_net_option(text) == option


@pytest.mark.parametrize(
    "text",
    ["", "tap", "tap=", "tap=a,bridge=b", "mac=52:54:00:00:00:01", "tap=a,tap=b", "tap=a,x=1",
     "tap=a,mac=zz", "tap=a,mac=01:00:00:00:00:00", "tap=a,offload=maybe", "tap=a,vhost=1"],
)  # fmt: skip
def test_bad_net_option_is_one_clear_error(text):
    with pytest.raises(PyvmmError, match="^--net "):
        parse_net_option(text)


def test_default_mac_is_stable_unicast_and_differs_per_tap():
    assert default_mac("tap0") == default_mac("tap0") != default_mac("tap1")
    assert default_mac("tap0")[:3] == bytes.fromhex("525400")
