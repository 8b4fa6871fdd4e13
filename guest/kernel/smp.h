/* Starting the other CPUs: shared by smp.c and the trampoline in smp.S. */
#ifndef SMP_H
#define SMP_H

/* The page application processors start in (SIPI vector AP_TRAMPOLINE >> 12): below the
 * VMM's boot stack, RAM the boot-info contract leaves to the kernel (vmm/boot/layout.py). */
#define AP_TRAMPOLINE 0x70000

#ifndef __ASSEMBLER__
#include <stdint.h>
/* What the boot CPU leaves at the end of the trampoline for the next AP. */
struct ap_args {
    uint64_t cr3, stack, cpu, entry;
};
#endif
#endif
