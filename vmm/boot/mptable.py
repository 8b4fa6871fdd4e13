"""An Intel MultiProcessor Specification table, for Linux, as Firecracker writes one.

Without ACPI, Linux learns about the IOAPIC and how ISA interrupts reach it only from an
MP table (Intel MP Spec 1.4, chapter 4). Without one it is not merely left on the 8259
PIC: it searches for the table's floating pointer, 16 bytes at a time, through the BIOS
area at 0xf0000 (``smp_scan_config``), mapping the whole 64 KiB range afresh at every
step. Under PVM that search alone cost 1.3 s of a 15 s boot. The table goes where Linux
looks second, at the start of the EBDA (639 KiB), which the e820 map reserves.

One processor entry per vCPU (local APIC id = vCPU index, the boot CPU 0, as KVM numbers
them and as Firecracker's and kvmtool's tables do): Linux starts every CPU it finds here
with INIT/SIPI through the in-kernel local APICs. Then one ISA bus, the IOAPIC KVM's
in-kernel irqchip puts at 0xfec00000, and ISA IRQ n wired to IOAPIC pin n: that is how
KVM's default GSI routing connects them (GSI n to PIC pin n and IOAPIC pin n for n < 16).
No ACPI MADT is needed: Linux's MP-table parser takes any number of processors (up to its
NR_CPUS), and power-off without ACPI is a halt either way (vmm/vm/halt.py).
"""

from __future__ import annotations

import struct

from vmm.boot import layout
from vmm.memory import GuestMemory

MPTABLE_START = layout.EBDA_START
LAPIC_ADDRESS = 0xFEE0_0000  # the local APIC's default base (SDM vol. 3, 11.4.1)
IOAPIC_ADDRESS = 0xFEC0_0000  # KVM's in-kernel IOAPIC (KVM_IOAPIC_DEFAULT_BASE_ADDRESS)
ISA_IRQS = 16
MP_SPEC_REV = 4  # 1.4
# Entry types and flags, MP Spec 1.4, 4.3.
MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC = 0, 1, 2, 3, 4
CPU_ENABLED, CPU_BOOTPROCESSOR = 1, 2
MP_IOAPIC_USABLE = 1
MP_INT, MP_NMI, MP_EXTINT = 0, 1, 3
MP_IRQFLAG_CONFORMS = 0  # polarity and trigger as the bus says (ISA: high, edge)
LAPIC_VERSION = 0x14
MAX_APIC_ID = 0xFF  # xAPIC ids are 8 bits and 0xff is the broadcast id

IOAPIC_VERSION = 0x11
BUS_ISA = b"ISA   "
LINT0, LINT1 = 0, 1
ALL_APICS = 0xFF

_FLOATING = struct.Struct("<4sIBBBB4s")  # "_MP_", physptr, length (16s), rev, sum, features
_HEADER = struct.Struct("<4sHBB8s12sIHHIHBB")  # "PCMP" ... (MP Spec 4.2)
_PROCESSOR = struct.Struct("<BBBBII8x")
_BUS = struct.Struct("<BB6s")
_IOAPIC = struct.Struct("<BBBBI")
_INTSRC = struct.Struct("<BBHBBBB")


def _checksum(data: bytes) -> int:
    """The byte that makes the structure's bytes sum to zero (MP Spec 4.1, 4.2)."""
    return -sum(data) & 0xFF


def build(base: int = MPTABLE_START, cpus: int = 1) -> bytes:
    """The floating pointer at ``base`` and the configuration table right after it,
    listing ``cpus`` processors."""
    if not 1 <= cpus < MAX_APIC_ID:
        raise ValueError(f"{cpus} CPUs do not fit an MP table")
    # APIC ids share one name space (MP Spec 4.3.3): the IOAPIC's comes after the CPUs'.
    ioapic_id = cpus
    flags = [CPU_ENABLED | CPU_BOOTPROCESSOR] + [CPU_ENABLED] * (cpus - 1)
    entries = [  # CPU signature and features 0: Linux reads its own from CPUID
        _PROCESSOR.pack(MP_PROCESSOR, cpu, LAPIC_VERSION, flags[cpu], 0, 0) for cpu in range(cpus)
    ]
    entries += [
        _BUS.pack(MP_BUS, 0, BUS_ISA),
        _IOAPIC.pack(MP_IOAPIC, ioapic_id, IOAPIC_VERSION, MP_IOAPIC_USABLE, IOAPIC_ADDRESS),
    ]
    entries += [
        _INTSRC.pack(MP_INTSRC, MP_INT, MP_IRQFLAG_CONFORMS, 0, irq, ioapic_id, irq)
        for irq in range(ISA_IRQS)
    ]
    entries += [
        _INTSRC.pack(MP_LINTSRC, MP_EXTINT, MP_IRQFLAG_CONFORMS, 0, 0, ALL_APICS, LINT0),
        _INTSRC.pack(MP_LINTSRC, MP_NMI, MP_IRQFLAG_CONFORMS, 0, 0, ALL_APICS, LINT1),
    ]
    body = b"".join(entries)
    fields = [b"PCMP", _HEADER.size + len(body), MP_SPEC_REV, 0, b"PYVMM   ", b"PYVMM       ",
              0, 0, len(entries), LAPIC_ADDRESS, 0, 0, 0]  # fmt: skip
    header = _HEADER.pack(*fields)
    fields[3] = _checksum(header + body)
    table = _HEADER.pack(*fields) + body
    floating = [b"_MP_", base + _FLOATING.size, 1, MP_SPEC_REV, 0, 0, bytes(4)]
    floating[4] = _checksum(_FLOATING.pack(*floating))
    return _FLOATING.pack(*floating) + table


def write(memory: GuestMemory, cpus: int = 1) -> None:
    memory.write(MPTABLE_START, build(cpus=cpus))
