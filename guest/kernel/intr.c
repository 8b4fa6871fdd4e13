/* Interrupts, for `pyvmm boot --interrupts` (boot-info flag BOOT_FLAG_INTERRUPTS): the
 * kernel then sleeps in HLT until a device interrupts instead of polling it.
 *
 * The path of one interrupt, device to handler: the VMM raises a line (the UART's IRQ 4
 * with KVM_IRQ_LINE, a disk's GSI through an irqfd); KVM's in-kernel IOAPIC looks up that
 * pin's redirection entry, written here (vector, trigger mode, destination APIC), and
 * sends the vector to that CPU's local APIC; the CPU, once RFLAGS.IF is set, takes it
 * through the IDT (irq_stubs in traps.S) into irq_dispatch, and the handler's EOI to the
 * local APIC lets the next one of that priority in (and, for a level-triggered pin, has
 * the IOAPIC look at the line again). The local APIC's own timer ticks the same way,
 * without an IOAPIC. The legacy 8259 PIC is masked: KVM wires it to the boot CPU's LINT0
 * too, and it would deliver the same ISA IRQs at vectors of its own. */
#include "kernel.h"

#define IOAPIC_BASE 0xfec00000ul
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin)) /* low half; high half at +1 (82093AA 3.2.4) */
#define IOAPIC_LEVEL (1 << 15)              /* trigger mode: level (0: edge) */
#define APIC_EOI 0x0b0
#define APIC_LVT_TIMER 0x320
#define APIC_TIMER_INITIAL 0x380
#define APIC_TIMER_DIVIDE 0x3e0
#define APIC_TIMER_PERIODIC (1 << 17)
#define APIC_TIMER_DIVIDE_16 0x3
#define TIMER_COUNT 1000000 /* bus clocks / 16 between ticks: some 10 ms on KVM's 1 GHz APIC bus */
#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1

int interrupts_on; /* the boot info asked for interrupts and they are set up */
struct irq_counts irq_counts;
static void (*pin_handlers[NR_IOAPIC_PINS])(int);
static int pin_args[NR_IOAPIC_PINS];

static void ioapic_write(uint32_t reg, uint32_t value)
{
    *(volatile uint32_t *)(IOAPIC_BASE + IOAPIC_REGSEL) = reg;
    *(volatile uint32_t *)(IOAPIC_BASE + IOAPIC_WINDOW) = value;
}

/* Route IOAPIC pin ``pin`` to vector IRQ_VECTOR(pin) on the boot CPU, fixed delivery,
 * active high, and call ``handler(arg)`` when it comes. */
void irq_route(int pin, int level, void (*handler)(int), int arg)
{
    pin_handlers[pin] = handler;
    pin_args[pin] = arg;
    ioapic_write(IOAPIC_REDTBL(pin) + 1, 0u << 24); /* destination: APIC id 0 */
    ioapic_write(IOAPIC_REDTBL(pin), IRQ_VECTOR(pin) | (level ? IOAPIC_LEVEL : 0));
}

void interrupts_init(const struct boot_info *bi)
{
    if (!(bi->flags & BOOT_FLAG_INTERRUPTS))
        return;
    outb(PIC1_DATA, 0xff);
    outb(PIC2_DATA, 0xff);
    lapic_enable();
    lapic_write(APIC_TIMER_DIVIDE, APIC_TIMER_DIVIDE_16);
    lapic_write(APIC_LVT_TIMER, APIC_TIMER_PERIODIC | TIMER_VECTOR);
    lapic_write(APIC_TIMER_INITIAL, TIMER_COUNT);
    interrupts_on = 1;
}

/* Called by the stubs in traps.S with interrupts off, on the interrupted code's stack
 * (or the TSS's ring-0 stack when ring 3 was interrupted). */
void irq_dispatch(uint64_t vector)
{
    if (vector == TIMER_VECTOR) {
        irq_counts.timer++;
    } else {
        int pin = vector - IRQ_VECTOR(0);
        if (pin >= 0 && pin < NR_IOAPIC_PINS && pin_handlers[pin])
            pin_handlers[pin](pin_args[pin]);
    }
    /* >>> 20: end of interrupt: until the local APIC hears it, it delivers nothing of
     * ... this priority or lower, and a level-triggered IOAPIC pin stays blocked */
    lapic_write(APIC_EOI, 0);
    /* <<< */
}

/* Sleep until an interrupt has been handled. STI's one-instruction shadow makes STI;HLT
 * safe: an interrupt already pending wakes the HLT rather than slipping in before it. */
void wait_for_interrupt(void)
{
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}
