/* The CPU tables a kernel with a user mode needs: a GDT with user segments and a TSS,
 * an IDT, the SYSCALL MSRs, and user access to chosen 2 MiB pages. Each CPU has a GDT,
 * a TSS and stacks of its own (loading a TSS marks it busy in that GDT, so two CPUs
 * cannot share one); they share the IDT. Only the boot CPU runs programs in ring 3. */
#include "kernel.h"

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define EFER_SCE 1 /* SYSCALL enable */

#define RFLAGS_IF (1 << 9)
#define RFLAGS_TF (1 << 8)
#define RFLAGS_DF (1 << 10)
#define RFLAGS_AC (1 << 18)
#define RFLAGS_RESERVED (1 << 1)

#define PTE_PRESENT 1
#define PTE_WRITE 2
#define PTE_USER 4
#define PAGE_2M (2ull << 20)

struct tss {
    uint32_t reserved0;
    uint64_t rsp[3]; /* stack for entering ring 0 from ring 3 */
    uint64_t reserved1;
    uint64_t ist[7]; /* known-good stacks for chosen exceptions */
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base; /* past the limit: no I/O bitmap, so ring 3 has no port access */
} __attribute__((packed));

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_high, zero;
} __attribute__((packed));

struct cpu {
    uint8_t kernel_stack[16384] __attribute__((aligned(16)));
    uint8_t fault_stack[4096] __attribute__((aligned(16)));
    struct tss tss;
    uint64_t gdt[8];
};

static struct cpu cpus[MAX_CPUS];
uint64_t tss_rsp0; /* traps.S switches to it on a hardware SYSCALL (the boot CPU's) */
static struct idt_gate idt[256];
extern const uint64_t trap_stubs[32]; /* traps.S */
extern const uint64_t irq_stubs[][2]; /* traps.S: (vector, entry) pairs, then (0, 0) */
extern char spurious_entry[];         /* traps.S */
extern char syscall_entry[];          /* traps.S, in the user-accessible page */
extern char bp_entry[];               /* traps.S: #BP, a system call under PVM */
extern char __user_text_start[], __user_text_end[];

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static void set_gate(int vector, uint64_t handler, int dpl, int ist)
{
    idt[vector] = (struct idt_gate){
        .offset_low = handler & 0xffff,
        .selector = KERNEL_CS,
        .ist = ist,
        .type_attr = 0x80 | (dpl << 5) | 0xe, /* present, 64-bit interrupt gate */
        .offset_mid = (handler >> 16) & 0xffff,
        .offset_high = handler >> 32,
    };
}

uint64_t cpu_stack_top(unsigned cpu)
{
    return (uint64_t)cpus[cpu].kernel_stack + sizeof(cpus[cpu].kernel_stack);
}

/* This CPU's GDT and TSS, loaded with its segment registers and task register; the IDT. */
static void load_tables(unsigned cpu)
{
    struct cpu *c = &cpus[cpu];
    struct tss *tss = &c->tss;
    uint64_t *gdt = c->gdt;
    tss->rsp[0] = cpu_stack_top(cpu);
    tss->ist[0] = (uint64_t)c->fault_stack + sizeof(c->fault_stack);
    tss->iomap_base = sizeof(*tss);

    gdt[1] = 0x00af9a000000ffff; /* kernel code, 64-bit */
    gdt[2] = 0x00cf92000000ffff; /* kernel data */
    gdt[3] = 0x00cffa000000ffff; /* user code, 32-bit (unused; SYSRET's layout needs it) */
    gdt[4] = 0x00cff2000000ffff; /* user data */
    gdt[5] = 0x00affa000000ffff; /* user code, 64-bit */
    uint64_t base = (uint64_t)tss, limit = sizeof(*tss) - 1;
    gdt[6] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
             ((base >> 24 & 0xff) << 56); /* 64-bit TSS, available */
    gdt[7] = base >> 32;

    struct { uint16_t limit; uint64_t base; } __attribute__((packed))
        gdtr = {sizeof(c->gdt) - 1, (uint64_t)gdt}, idtr = {sizeof(idt) - 1, (uint64_t)idt};
    __asm__ volatile("lgdt %0" ::"m"(gdtr));
    /* Reload CS with a far return, then the data segments and the task register. */
    __asm__ volatile("pushq %0; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1:" ::"i"(KERNEL_CS) : "rax", "memory");
    __asm__ volatile("movw %w0, %%ds; movw %w0, %%es; movw %w0, %%ss; movw %w0, %%fs; movw %w0, %%gs" ::"r"(KERNEL_DS));
    __asm__ volatile("ltr %w0" ::"r"(TSS_SEL));
    __asm__ volatile("lidt %0" ::"m"(idtr));
}

void cpu_init_ap(unsigned cpu)
{
    load_tables(cpu);
}

void cpu_init(void)
{
    tss_rsp0 = cpu_stack_top(0);
    for (int v = 0; v < 32; v++)
        set_gate(v, trap_stubs[v], 0, v == 8 ? 1 : 0); /* #DF on its own stack */
    /* #BP is reachable from ring 3: under PVM it is how a system call enters ring 0. */
    set_gate(3, (uint64_t)bp_entry, 3, 0);
    /* >>> 20: a gate for each interrupt vector (taken only with interrupts on, intr.c):
     * ... irq_stubs holds (vector, entry) pairs, ending with (0, 0); ring 0 only, no IST */
    for (int i = 0; irq_stubs[i][0]; i++)
        set_gate(irq_stubs[i][0], irq_stubs[i][1], 0, 0);
    /* <<< */
    set_gate(SPURIOUS_VECTOR, (uint64_t)spurious_entry, 0, 0);
    load_tables(0);

    /* SYSCALL: CS/SS from STAR[47:32]; SYSRET: from STAR[63:48] (+16 for 64-bit CS). */
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_STAR, ((uint64_t)(0x18 | 3) << 48) | ((uint64_t)KERNEL_CS << 32));
    wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
    wrmsr(MSR_SFMASK, RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC);

    /* The syscall entry must run in ring 3 under PVM, so its page is user, read-only. */
    map_user((uint64_t)__user_text_start, (uint64_t)__user_text_end, 0);
}

/* Give ring 3 the 2 MiB pages covering [start, end). The VMM's page tables map all RAM
 * with 2 MiB pages, supervisor-only; upper levels already allow user access. */
void map_user(uint64_t start, uint64_t end, int writable)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t *pml4 = (uint64_t *)(cr3 & ~0xfffull);
    for (uint64_t a = start & ~(PAGE_2M - 1); a < end; a += PAGE_2M) {
        uint64_t *pdpt = (uint64_t *)(pml4[a >> 39 & 511] & ~0xfffull);
        uint64_t *pd = (uint64_t *)(pdpt[a >> 30 & 511] & ~0xfffull);
        uint64_t *pde = &pd[a >> 21 & 511];
        *pde = (*pde & ~(uint64_t)PTE_WRITE) | PTE_USER | (writable ? PTE_WRITE : 0);
    }
    __asm__ volatile("mov %0, %%cr3" ::"r"(cr3) : "memory"); /* flush the TLB */
}

void enter_user(uint64_t rip, uint64_t rsp)
{
    /* An IRET frame: SS, RSP, RFLAGS, CS, RIP (SDM vol. 3, 6.14.2). */
    __asm__ volatile("pushq %0; pushq %1; pushq %2; pushq %3; pushq %4; iretq" ::"i"(USER_DS),
                     "r"(rsp), "i"(RFLAGS_IF | RFLAGS_RESERVED), "i"(USER_CS), "r"(rip));
    __builtin_unreachable();
}
