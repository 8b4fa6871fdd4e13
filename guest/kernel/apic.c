/* The local APIC, through its memory-mapped registers at the architectural default base
 * (SDM vol. 3, chapter 11; the VMM maps that page, and KVM's in-kernel APIC answers it).
 * Each CPU sees its own local APIC at the same address. */
#include "kernel.h"

#define LAPIC_BASE 0xfee00000ul
#define APIC_ID 0x020        /* bits 31:24: this CPU's APIC id */
#define APIC_SVR 0x0f0       /* spurious-interrupt vector register */
#define APIC_ICR_LOW 0x300   /* interrupt command register: writing the low half sends */
#define APIC_ICR_HIGH 0x310  /* bits 31:24: the destination APIC id */
#define APIC_SVR_ENABLE 0x100
#define APIC_ICR_BUSY (1 << 12) /* delivery status: the IPI has not been accepted yet */

static volatile uint32_t *lapic_reg(uint32_t reg)
{
    return (volatile uint32_t *)(LAPIC_BASE + reg);
}

uint32_t lapic_read(uint32_t reg) { return *lapic_reg(reg); }
void lapic_write(uint32_t reg, uint32_t value) { *lapic_reg(reg) = value; }

unsigned lapic_id(void) { return lapic_read(APIC_ID) >> 24; }

/* Software-enable this CPU's local APIC (SDM 11.4.3): without it no interrupt is taken. */
void lapic_enable(void)
{
    lapic_write(APIC_SVR, APIC_SVR_ENABLE | SPURIOUS_VECTOR);
}

/* Send an inter-processor interrupt and wait until the local APIC has sent it. */
void lapic_send_ipi(unsigned apic_id, uint32_t command)
{
    lapic_write(APIC_ICR_HIGH, apic_id << 24);
    lapic_write(APIC_ICR_LOW, command);
    while (lapic_read(APIC_ICR_LOW) & APIC_ICR_BUSY)
        __asm__ volatile("pause");
}
