"""The MP table Linux finds the IOAPIC through: checksums, layout, routing (MP Spec 1.4)."""

import struct

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
