"""The split virtqueue on its own: chains, rings, wrap-around and hostile drivers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtio_driver import MEMORY_SIZE, Ring

from vmm.devices.virtio.virtqueue import (
    VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    VIRTQ_USED_F_NO_NOTIFY,
    Virtqueue,
    VirtqueueError,
)
from vmm.memory import GuestMemory

NEXT, WRITE, INDIRECT = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT


@pytest.fixture
def memory():
    mem = GuestMemory.flat(MEMORY_SIZE)
    yield mem
    mem.close()


def make_queue(memory: GuestMemory, size: int = 8) -> tuple[Ring, Virtqueue]:
    ring = Ring(memory, size)
    return ring, Virtqueue(memory, size, ring.desc_addr, ring.avail_addr, ring.used_addr)


def test_chain_splits_readable_and_writable_buffers_in_order(memory):
    ring, queue = make_queue(memory)
    a, b, c = ring.alloc(16, b"header"), ring.alloc(100, b"out"), ring.alloc(7)
    ring.publish(ring.chain([(a, 16, False), (b, 100, False), (c, 7, True)]))

    chain = queue.pop()

    assert chain.fault is None
    assert [bytes(v) for v in chain.readable] == [
        b"header".ljust(16, b"\0"),
        b"out".ljust(100, b"\0"),
    ]
    assert [len(v) for v in chain.writable] == [7]
    assert queue.pop() is None


def test_buffers_are_zero_copy_views_of_guest_memory(memory):
    ring, queue = make_queue(memory)
    addr = ring.alloc(4)
    ring.publish(ring.chain([(addr, 4, True)]))
    chain = queue.pop()
    chain.writable[0][:] = b"abcd"
    assert memory.read(addr, 4) == b"abcd"


def test_used_element_is_published_with_index(memory):
    ring, queue = make_queue(memory)
    ring.publish(ring.chain([(ring.alloc(1), 1, True)]))
    head = queue.pop().head
    queue.add_used(head, 1)
    assert ring.used() == [(head, 1)]


def test_indices_wrap_around_at_16_bits(memory):
    ring, queue = make_queue(memory, size=4)
    addr = ring.alloc(8)
    heads = [ring.chain([(addr, 8, True)]) for _ in range(4)]
    for n in range(65536 + 6):
        ring.publish(heads[n % 4])
        chain = queue.pop()
        assert chain.head == heads[n % 4]
        queue.add_used(chain.head, n & 0xFF)
        assert ring.used() == [(chain.head, n & 0xFF)]
    assert ring.avail_idx == 6
    assert memory.read_u16(ring.used_addr + 2) == 6


def test_indirect_table_is_followed(memory):
    ring, queue = make_queue(memory)
    table = ring.alloc(32)
    header, status = ring.alloc(16, b"h" * 16), ring.alloc(1)
    ring.write_desc(table, 0, header, 16, NEXT, 1)
    ring.write_desc(table, 1, status, 1, WRITE, 0)
    ring.write_desc(ring.desc_addr, 0, table, 32, INDIRECT, 0)
    ring.publish(0)

    chain = queue.pop()

    assert chain.head == 0 and chain.fault is None
    assert [bytes(v) for v in chain.readable] == [b"h" * 16]
    assert [len(v) for v in chain.writable] == [1]


def test_direct_descriptors_may_lead_into_an_indirect_table(memory):
    ring, queue = make_queue(memory)
    table = ring.alloc(16)
    ring.write_desc(table, 0, ring.alloc(1), 1, WRITE, 0)
    ring.write_desc(ring.desc_addr, 0, ring.alloc(16), 16, NEXT, 1)
    ring.write_desc(ring.desc_addr, 1, table, 16, INDIRECT, 0)
    ring.publish(0)
    chain = queue.pop()
    assert (len(chain.readable), len(chain.writable)) == (1, 1)


@pytest.mark.parametrize(
    "desc",
    [
        pytest.param((0, 16, NEXT, 0), id="loop_to_itself"),
        pytest.param((0, 16, NEXT, 9), id="next_past_table"),
    ],
)
def test_malformed_chain_raises_virtqueue_error(memory, desc):
    ring, queue = make_queue(memory)
    addr, length, flags, nxt = desc
    ring.write_desc(ring.desc_addr, 0, ring.alloc(16) + addr, length, flags, nxt)
    ring.publish(0)
    with pytest.raises(VirtqueueError):
        queue.pop()


def test_descriptor_loop_through_several_descriptors_is_detected(memory):
    ring, queue = make_queue(memory)
    addr = ring.alloc(16)
    for i in range(8):
        ring.write_desc(ring.desc_addr, i, addr, 16, NEXT, (i + 1) % 3)
    ring.publish(0)
    with pytest.raises(VirtqueueError, match="longer than the queue"):
        queue.pop()


def test_head_index_past_table_raises(memory):
    ring, queue = make_queue(memory)
    ring.publish(8)
    with pytest.raises(VirtqueueError, match="index 8"):
        queue.pop()


def test_available_index_jumping_past_queue_size_raises(memory):
    ring, queue = make_queue(memory)
    memory.write_u16(ring.avail_addr + 2, 9)
    with pytest.raises(VirtqueueError, match="more than the queue size"):
        queue.pop()


def test_nested_indirect_table_raises(memory):
    ring, queue = make_queue(memory)
    inner, outer = ring.alloc(16), ring.alloc(16)
    ring.write_desc(inner, 0, ring.alloc(1), 1, WRITE, 0)
    ring.write_desc(outer, 0, inner, 16, INDIRECT, 0)
    ring.write_desc(ring.desc_addr, 0, outer, 16, INDIRECT, 0)
    ring.publish(0)
    with pytest.raises(VirtqueueError, match="another indirect"):
        queue.pop()


@pytest.mark.parametrize(
    ("addr", "length", "flags"),
    [
        pytest.param(0x20000, 17, INDIRECT, id="length_not_multiple_of_16"),
        pytest.param(0x20000, 0, INDIRECT, id="empty_table"),
        pytest.param(MEMORY_SIZE - 16, 32, INDIRECT, id="table_outside_memory"),
        pytest.param(0x20000, 16, INDIRECT | NEXT, id="indirect_with_next"),
    ],
)
def test_bad_indirect_descriptor_raises(memory, addr, length, flags):
    ring, queue = make_queue(memory)
    ring.write_desc(ring.desc_addr, 0, addr, length, flags, 1)
    ring.publish(0)
    with pytest.raises(VirtqueueError):
        queue.pop()


def test_loop_inside_indirect_table_is_detected(memory):
    ring, queue = make_queue(memory)
    table = ring.alloc(32)
    ring.write_desc(table, 0, ring.alloc(1), 1, NEXT, 1)
    ring.write_desc(table, 1, ring.alloc(1), 1, NEXT, 0)
    ring.write_desc(ring.desc_addr, 0, table, 32, INDIRECT, 0)
    ring.publish(0)
    with pytest.raises(VirtqueueError):
        queue.pop()


def test_buffer_outside_memory_faults_the_chain_but_keeps_its_place(memory):
    ring, queue = make_queue(memory)
    status = ring.alloc(1)
    ring.publish(ring.chain([(MEMORY_SIZE - 4, 8, True), (status, 1, True)]))
    chain = queue.pop()
    assert "outside guest memory" in chain.fault
    assert [len(v) for v in chain.writable] == [0, 1]


def test_readable_buffer_after_writable_one_faults_the_chain(memory):
    ring, queue = make_queue(memory)
    ring.publish(ring.chain([(ring.alloc(1), 1, True), (ring.alloc(1), 1, False)]))
    assert "follows a device-writable" in queue.pop().fault


@pytest.mark.parametrize(
    ("size", "desc", "avail", "used"),
    [
        pytest.param(6, 0x1000, 0x2000, 0x3000, id="size_not_power_of_2"),
        pytest.param(0, 0x1000, 0x2000, 0x3000, id="size_zero"),
        pytest.param(65536, 0x1000, 0x2000, 0x3000, id="size_too_big"),
        pytest.param(8, 0x1008, 0x2000, 0x3000, id="misaligned_descriptors"),
        pytest.param(8, 0x1000, 0x2001, 0x3000, id="misaligned_avail"),
        pytest.param(8, 0x1000, 0x2000, 0x3002, id="misaligned_used"),
        pytest.param(8, MEMORY_SIZE - 64, 0x2000, 0x3000, id="table_past_memory"),
        pytest.param(8, 0x1000, 0x2000, MEMORY_SIZE - 8, id="used_past_memory"),
    ],
)
def test_bad_queue_layout_is_refused(memory, size, desc, avail, used):
    with pytest.raises(VirtqueueError):
        Virtqueue(memory, size, desc, avail, used)


def test_no_interrupt_flag_suppresses_used_notification(memory):
    ring, queue = make_queue(memory)
    memory.write_u16(ring.avail_addr, VIRTQ_AVAIL_F_NO_INTERRUPT)
    ring.publish(ring.chain([(ring.alloc(1), 1, True)]))
    queue.add_used(queue.pop().head, 1)
    assert not queue.needs_interrupt()


def test_interrupt_needed_once_per_batch_of_used_buffers(memory):
    ring, queue = make_queue(memory)
    assert not queue.needs_interrupt()
    for _ in range(3):
        ring.publish(ring.chain([(ring.alloc(1), 1, True)]))
        queue.add_used(queue.pop().head, 1)
    assert queue.needs_interrupt()
    assert not queue.needs_interrupt()


def test_notification_suppression_sets_used_flags(memory):
    ring, queue = make_queue(memory)
    queue.set_notifications(False)
    assert memory.read_u16(ring.used_addr) == VIRTQ_USED_F_NO_NOTIFY
    queue.set_notifications(True)
    assert memory.read_u16(ring.used_addr) == 0


# Hostile drivers: random descriptor tables, indirect tables and available rings.

QUEUE_SIZE = 8
INDIRECT_TABLE = 0x8000
BUFFER_ZONE = (0x10000, MEMORY_SIZE + 0x1000)  # straddles the end of guest memory

descriptors = st.tuples(
    st.one_of(st.integers(*BUFFER_ZONE), st.just(INDIRECT_TABLE), st.integers(0, 2**64 - 1)),
    st.one_of(st.integers(0, 0x2000), st.sampled_from([16, 32, 64]), st.integers(0, 2**32 - 1)),
    st.one_of(st.integers(0, 7), st.integers(0, 0xFFFF)),
    st.one_of(st.integers(0, QUEUE_SIZE + 1), st.integers(0, 0xFFFF)),
)
hostile = st.fixed_dictionaries(
    {
        "table": st.lists(descriptors, min_size=QUEUE_SIZE, max_size=QUEUE_SIZE),
        "indirect": st.lists(descriptors, min_size=4, max_size=4),
        "heads": st.lists(
            st.one_of(st.integers(0, QUEUE_SIZE), st.integers(0, 0xFFFF)),
            min_size=QUEUE_SIZE,
            max_size=QUEUE_SIZE,
        ),
        "avail_idx": st.one_of(st.integers(0, QUEUE_SIZE + 2), st.integers(0, 0xFFFF)),
    }
)


def write_hostile(memory: GuestMemory, ring: Ring, case: dict) -> None:
    for i, desc in enumerate(case["table"]):
        memory.write(ring.desc_addr + 16 * i, struct.pack("<QIHH", *desc))
    for i, desc in enumerate(case["indirect"]):
        memory.write(INDIRECT_TABLE + 16 * i, struct.pack("<QIHH", *desc))
    for i, head in enumerate(case["heads"]):
        memory.write_u16(ring.avail_addr + 4 + 2 * i, head)
    memory.write_u16(ring.avail_addr + 2, case["avail_idx"])


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(case=hostile)
def test_hostile_rings_give_chains_or_virtqueue_errors_only(case):
    memory = GuestMemory.flat(MEMORY_SIZE)
    try:
        ring, queue = make_queue(memory, QUEUE_SIZE)
        write_hostile(memory, ring, case)
        popped = 0
        try:
            while (chain := queue.pop()) is not None:
                popped += 1
                assert 0 <= chain.head < QUEUE_SIZE
                assert len(chain.readable) + len(chain.writable) <= QUEUE_SIZE
                for view in (*chain.readable, *chain.writable):
                    assert len(view) <= MEMORY_SIZE
                    view.release()
                queue.add_used(chain.head, 0)
        except VirtqueueError:
            pass
        assert popped <= min(case["avail_idx"], QUEUE_SIZE)
        assert memory.read_u16(ring.used_addr + 2) == popped
    finally:
        memory.close()
