/* Shared declarations of the tiny kernel. */
#ifndef KERNEL_H
#define KERNEL_H
#include <stddef.h>
#include <stdint.h>

#include "../include/bootinfo.h"

/* Segment selectors: the layout SYSCALL/SYSRET require (SDM vol. 2, SYSCALL): kernel code,
 * kernel data, then user code32 (unused), user data, user code64, then the TSS. */
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_DS (0x20 | 3)
#define USER_CS (0x28 | 3)
#define TSS_SEL 0x30

/* Exit status when the kernel itself gives up. */
#define PANIC_STATUS 255

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* The time-stamp counter: deadlines in ticks (a few GHz: a second is some 2^31-2^32). */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* The registers as the trap entry saves them (traps.S pushes them in this order). */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* uart.c */
void uart_init(void);
void uart_write(const char *s, size_t n);
void uart_enable_interrupts(void);
void kprintf(const char *fmt, ...);

/* power.c */
__attribute__((noreturn)) void power_off(int status);
__attribute__((noreturn)) void panic(const char *msg);

/* main.c */
int cmdline_has(const struct boot_info *bi, const char *word);

/* cpu.c */
#define MAX_CPUS 16 /* pyvmm boot --cpus at most */
void cpu_init(void);
void cpu_init_ap(unsigned cpu);
uint64_t cpu_stack_top(unsigned cpu);
void map_user(uint64_t start, uint64_t end, int writable);
__attribute__((noreturn)) void enter_user(uint64_t rip, uint64_t rsp);

/* apic.c */
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t value);
unsigned lapic_id(void);
void lapic_enable(void);
void lapic_send_ipi(unsigned apic_id, uint32_t command);

/* intr.c */
#define TIMER_VECTOR 0x20
#define IRQ_VECTOR(pin) (0x30 + (pin)) /* IOAPIC pin -> vector */
#define NR_IOAPIC_PINS 24
#define SPURIOUS_VECTOR 0xff
struct irq_counts {
    uint64_t timer, uart, uart_rx, virtio;
};
extern int interrupts_on;
extern struct irq_counts irq_counts;
void interrupts_init(const struct boot_info *bi);
void irq_route(int pin, int level, void (*handler)(int), int arg);
void wait_for_interrupt(void);

/* smp.c */
void smp_boot(const struct boot_info *bi);
unsigned cpus_online(void);

/* spinlock.c: a ticket lock (next: the next ticket to hand out; owner: the one served) */
struct spinlock {
    uint32_t next, owner;
};
void spin_lock(struct spinlock *lock);
void spin_unlock(struct spinlock *lock);

/* race.c */
void race_init(const struct boot_info *bi);
void race(unsigned cpu);

/* program.c */
__attribute__((noreturn)) void run_program(const struct boot_info *bi);

/* virtio_blk.c */
void virtio_blk_init(const struct boot_info *bi);
int virtio_blk_count(void);
int64_t virtio_blk_rw(int disk, int write, uint8_t *buf, uint64_t count, uint64_t offset);
int virtio_blk_flush(int disk);
void virtio_blk_selftest(void);

/* virtio_net.c */
void virtio_net_init(const struct boot_info *bi);
void virtio_net_hello(void);

/* program.c */
int user_range_ok(uint64_t p, uint64_t n);

/* lib.c */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
size_t strlen(const char *s);
int memcmp(const void *a, const void *b, size_t n);
#endif
