/* Where CPU exceptions arrive (system calls have their own path, in traps.S). */
#include "kernel.h"

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available", "#DF double fault",
    "coprocessor overrun", "#TS invalid TSS", "#NP segment not present", "#SS stack fault",
    "#GP general protection", "#PF page fault", "reserved", "#MF x87 error",
    "#AC alignment check", "#MC machine check", "#XM SIMD error", "#VE virtualization",
    "#CP control protection",
};

/* The signal a Linux process would die of, for the exit status 128 + signal. */
static int signal_for(uint64_t vector)
{
    switch (vector) {
    case 0: case 16: case 19: return 8;  /* SIGFPE */
    case 6: return 4;                     /* SIGILL */
    case 1: case 3: return 5;             /* SIGTRAP */
    case 17: return 7;                    /* SIGBUS */
    default: return 11;                   /* SIGSEGV */
    }
}

void trap_dispatch(struct trap_frame *f)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    const char *name = f->vector < 32 && exception_names[f->vector] ? exception_names[f->vector] : "?";
    kprintf("%s: %s (vector %u, error %x) at rip %p, rsp %p, cr2 %p\n",
            (f->cs & 3) ? "program killed" : "kernel fault", name, f->vector, f->error,
            f->rip, f->rsp, cr2);
    if (f->cs & 3)
        power_off(128 + signal_for(f->vector));
    panic("exception in ring 0");
}
