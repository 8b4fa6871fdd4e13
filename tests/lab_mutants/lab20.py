"""Wrong solutions of lab 20 (interrupts): its checks must fail each, naming what is missing.

Leaving the EOI out altogether is not among them: under PVM the local APIC delivers the
next interrupt without it (measured: after 52 UART interrupts and no EOI, ISR and PPR
read 0), so only hardware KVM could catch that one.
"""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "no IDT gates for the interrupt vectors",
        "cpu.c",
        "IDT",
        edits=(("        set_gate(irq_stubs[i][0], irq_stubs[i][1], 0, 0);\n", "        ;\n"),),
    ),
    Mutant(
        "the EOI written to the register before it (0xf0, spurious vector: disables the APIC)",
        "intr.c",
        "EOI",
        edits=(("    lapic_write(APIC_EOI, 0);\n", "    lapic_write(0x0f0, 0);\n"),),
    ),
]
