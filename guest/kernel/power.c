/* Ending the run: pyvmm's exit port carries the status to the VMM's exit code. */
#include "kernel.h"

#define EXIT_PORT 0x501

void power_off(int status)
{
    if (interrupts_on)
        kprintf("interrupts: timer %u, uart %u (%u bytes received), virtio %u\n",
                irq_counts.timer, irq_counts.uart, irq_counts.uart_rx, irq_counts.virtio);
    outb(EXIT_PORT, (uint8_t)status);
    for (;;) /* pyvmm never runs us again; on another VMM, stop here */
        __asm__ volatile("cli; hlt");
}

void panic(const char *msg)
{
    kprintf("kernel panic: %s\n", msg);
    power_off(PANIC_STATUS);
}
