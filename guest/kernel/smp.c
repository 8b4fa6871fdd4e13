/* Bringing up the other CPUs (SDM vol. 3, 8.4.4, "MP initialization example"). The VMM
 * starts only the boot CPU; every other one waits, as on a PC after reset, for its local
 * APIC to receive INIT and then a start-up IPI (SIPI) naming the page to start in. The
 * boot CPU sends them one CPU at a time, each time leaving that CPU a stack and its
 * number in the trampoline page, and waits until it has reported in.
 *
 * Hardware wants 10 ms after INIT and 200 us after each SIPI (the SDM's example); KVM's
 * local APIC acts on an IPI as soon as it is sent, so the kernel waits only for the
 * delivery status and for the AP itself, with a deadline in TSC ticks. */
#include "kernel.h"
#include "smp.h"

#define APIC_DM_INIT 0x500        /* ICR delivery mode INIT */
#define APIC_DM_STARTUP 0x600     /* ICR delivery mode start-up; the vector is the page */
#define APIC_LEVEL_ASSERT 0x4000
#define AP_DEADLINE_TICKS (4ull << 30) /* about a second or two of TSC */

extern const char ap_trampoline[], ap_trampoline_end[], ap_trampoline_args[];

static volatile unsigned cpus_up = 1; /* the boot CPU is */
static int ap_spin; /* command line "ap_spin": keep busy instead of halting */

/* An application processor, in long mode on its own stack, with the trampoline's GDT. */
static void ap_main(unsigned cpu)
{
    cpu_init_ap(cpu);
    kprintf("cpu %u: APIC id %u\n", cpu, lapic_id());
    __atomic_store_n(&cpus_up, cpu + 1, __ATOMIC_RELEASE);
    race(cpu);
    for (;;)
        if (!ap_spin) /* `pyvmm bench vcpus` keeps them busy */
            __asm__ volatile("cli; hlt");
}

static int start_cpu(unsigned cpu, unsigned apic_id)
{
    struct ap_args *args = (struct ap_args *)(AP_TRAMPOLINE + (ap_trampoline_args - ap_trampoline));
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    *args = (struct ap_args){cr3, cpu_stack_top(cpu), cpu, (uint64_t)ap_main};

    /* >>> 22: wake the CPU with apic_id: INIT (assert), then a start-up IPI, twice (the
     * ... second is for a CPU that missed the first), whose vector is the page number of
     * ... the trampoline (AP_TRAMPOLINE); lapic_send_ipi(apic_id, command) sends one */
    lapic_send_ipi(apic_id, APIC_DM_INIT | APIC_LEVEL_ASSERT);
    for (int i = 0; i < 2; i++) /* the second SIPI is for a CPU that missed the first */
        lapic_send_ipi(apic_id, APIC_DM_STARTUP | (AP_TRAMPOLINE >> 12));
    /* <<< */
    uint64_t deadline = rdtsc() + AP_DEADLINE_TICKS;
    while (__atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE) <= cpu)
        if (rdtsc() > deadline)
            return 0;
    return 1;
}

unsigned cpus_online(void) { return __atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE); }

void smp_boot(const struct boot_info *bi)
{
    unsigned n = bi->nr_cpus < MAX_CPUS ? bi->nr_cpus : MAX_CPUS;
    if (n < 2)
        return;
    ap_spin = cmdline_has(bi, "ap_spin");
    lapic_enable();
    kprintf("cpu 0: APIC id %u, the boot CPU, starting %u more\n", lapic_id(), n - 1);
    memcpy((void *)AP_TRAMPOLINE, ap_trampoline, ap_trampoline_end - ap_trampoline);
    for (unsigned cpu = 1; cpu < n; cpu++)
        if (!start_cpu(cpu, cpu)) /* the VMM gives CPU i local APIC id i */
            kprintf("cpu %u: did not start\n", cpu);
    kprintf("%u CPUs up\n", cpus_up);
}
