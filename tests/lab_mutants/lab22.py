"""Lab 22's wrong solutions: a start-up IPI without the INIT before it, one naming the
wrong page, and a boot CPU that reports for the others."""

from labmutant import Mutant

_INIT = "    lapic_send_ipi(apic_id, APIC_DM_INIT | APIC_LEVEL_ASSERT);\n"
_SIPI = "APIC_DM_STARTUP | (AP_TRAMPOLINE >> 12)"

MUTANTS = [
    Mutant("no INIT: SIPIs only", "smp.c", "never reached ap_main", edits=((_INIT, ""),)),
    Mutant(
        "the SIPI's vector is the trampoline's address shifted by 16, not its page number",
        "smp.c",
        "never reached ap_main",
        edits=((_SIPI, "APIC_DM_STARTUP | (AP_TRAMPOLINE >> 16)"),),
    ),
    Mutant(
        "the boot CPU prints each AP's line and counts it up, never sending an IPI",
        "smp.c",
        "the line must come from the cpu it is about",
        edits=(
            (
                _INIT,
                '    kprintf("cpu %u: APIC id %u\\n", cpu, apic_id);\n'
                "    __atomic_store_n(&cpus_up, cpu + 1, __ATOMIC_RELEASE);\n"
                "    return 1;\n",
            ),
        ),
    ),
]
