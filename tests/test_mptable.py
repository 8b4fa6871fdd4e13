"""The MP table Linux finds the IOAPIC through: checksums, layout, routing (MP Spec 1.4)."""

import struct

import pytest

from vmm.boot import mptable


def test_floating_pointer_and_table_check_out_as_linux_checks_them():
    data = mptable.build(0x9FC00)
    magic, physptr, length, rev, _sum, feature1, _ = struct.unpack_from("<4sIBBBB4s", data)
    assert (magic, physptr, length, rev, feature1) == (b"_MP_", 0x9FC10, 1, 4, 0)
    assert sum(data[:16]) % 256 == 0  # mpf_checksum over 16 * length bytes
    table = data[16:]
    sig, size, rev, _sum = struct.unpack_from("<4sHBB", table)
    assert (sig, rev, size) == (b"PCMP", 4, len(table))
    assert sum(table) % 256 == 0
    (count,) = struct.unpack_from("<H", table, 34)
    (lapic,) = struct.unpack_from("<I", table, 36)
    assert lapic == 0xFEE00000 and count == 3 + 16 + 2
    assert len(data) <= 0x400  # inside the EBDA's first KiB, where Linux looks


def test_one_boot_cpu_one_ioapic_and_isa_irq_n_on_pin_n():
    table = mptable.build()[16:]
    at, kinds, routes = 44, [], {}
    while at < len(table):
        kind = table[at]
        kinds.append(kind)
        if kind == mptable.MP_PROCESSOR:
            _, apic_id, _, flags = struct.unpack_from("<BBBB", table, at)
            assert apic_id == 0 and flags == mptable.CPU_ENABLED | mptable.CPU_BOOTPROCESSOR
            at += 20
            continue
        if kind == mptable.MP_IOAPIC:
            _, ioapic_id, _, flags, address = struct.unpack_from("<BBBBI", table, at)
            assert (ioapic_id, flags, address) == (1, 1, 0xFEC00000)
        if kind == mptable.MP_INTSRC:
            _, irq_type, _, bus, irq, apic, pin = struct.unpack_from("<BBHBBBB", table, at)
            assert (irq_type, bus, apic) == (mptable.MP_INT, 0, 1)
            routes[irq] = pin
        at += 8
    assert at == len(table)
    assert kinds.count(mptable.MP_PROCESSOR) == 1 and kinds.count(mptable.MP_IOAPIC) == 1
    assert routes == {irq: irq for irq in range(16)}


def processors(table: bytes) -> tuple[list[tuple[int, int]], int | None]:
    """(local APIC id, flags) of each processor entry, and the IOAPIC's id."""
    at, cpus, ioapic = 44, [], None
    while at < len(table):
        kind = table[at]
        if kind == mptable.MP_PROCESSOR:
            _, apic_id, _, flags = struct.unpack_from("<BBBB", table, at)
            cpus.append((apic_id, flags))
            at += 20
            continue
        if kind == mptable.MP_IOAPIC:
            ioapic = table[at + 1]
        at += 8
    return cpus, ioapic


def test_every_cpu_is_listed_the_first_as_boot_cpu_and_the_ioapic_id_after_theirs():
    data = mptable.build(cpus=4)
    table = data[16:]
    assert sum(table) % 256 == 0 and struct.unpack_from("<H", table, 34)[0] == 4 + 2 + 16 + 2
    cpus, ioapic = processors(table)
    enabled, boot = mptable.CPU_ENABLED, mptable.CPU_BOOTPROCESSOR
    assert cpus == [(0, enabled | boot), (1, enabled), (2, enabled), (3, enabled)]
    assert ioapic == 4  # APIC ids are one name space (MP Spec 4.3.3)


def test_a_cpu_count_beyond_xapic_ids_is_refused():
    with pytest.raises(ValueError, match="255 CPUs"):
        mptable.build(cpus=255)
