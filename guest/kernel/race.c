/* Lab 23's demo, with the command-line word "race": once every CPU is up, all of them at
 * once print RACE_LINES lines each on the one UART. A line is many `out` instructions, a
 * byte each, and nothing in the UART keeps one CPU's bytes together: without a lock the
 * lines come out torn ("race nolock" shows it). With one, each line is whole, and the
 * CPUs still take turns line by line. */
#include "kernel.h"

#define RACE_LINES 12

static struct spinlock uart_lock;
static volatile unsigned go, done; /* the boot CPU's start signal; CPUs finished */
static unsigned racers;
static int race_on, locked;

void race_init(const struct boot_info *bi)
{
    race_on = cmdline_has(bi, "race");
    locked = !cmdline_has(bi, "nolock");
}

static void say(unsigned cpu, unsigned line)
{
    /* >>> 23: print one whole line while no other CPU prints: under uart_lock
     * ... (spin_lock, spin_unlock) when `locked`; the lock is held for this line only */
    if (locked)
        spin_lock(&uart_lock);
    kprintf("cpu %u says line %u of %u: all of it, in one piece\n", cpu, line, RACE_LINES);
    if (locked)
        spin_unlock(&uart_lock);
    /* <<< */
}

void race(unsigned cpu)
{
    if (!race_on)
        return;
    if (cpu == 0) { /* every AP that started waits for this */
        racers = cpus_online();
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    }
    while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE))
        __asm__ volatile("pause");
    for (unsigned line = 1; line <= RACE_LINES; line++)
        say(cpu, line);
    __atomic_add_fetch(&done, 1, __ATOMIC_ACQ_REL);
    if (cpu == 0) {
        while (__atomic_load_n(&done, __ATOMIC_ACQUIRE) < racers)
            __asm__ volatile("pause");
        kprintf("race: %u CPUs, %u lines each, %s\n", racers, RACE_LINES, locked ? "locked" : "no lock");
    }
}
