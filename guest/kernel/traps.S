/* Ways into ring 0: CPU exceptions and system calls, all ending in one trap frame
 * (struct trap_frame in kernel.h) and one C function, trap_dispatch(). */

#define KERNEL_DS 0x10
#define USER_DS (0x20 | 3)
#define USER_CS (0x28 | 3)
#define NR_SYSCALLS 258 /* syscall_table's size: openat (257) is the highest we serve */
#define ENOSYS 38
/* Arithmetic flags and DF may come back from user space; IF is always on there. */
#define USER_RFLAGS_MASK 0xcd5
#define RFLAGS_IF 0x200
#define RFLAGS_RESERVED 0x2

/* Exceptions that push an error code themselves (SDM vol. 3, table 6-1). */
#define HAS_ERROR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

.macro trap_stub v
trap_stub_\v:
    .if !HAS_ERROR(\v)
    pushq $0
    .endif
    pushq $\v
    jmp trap_common
.endm

#define VECTORS 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
.text
.irp v, VECTORS
    trap_stub \v
.endr

.section .rodata
.globl trap_stubs
trap_stubs:
.irp v, VECTORS
    .quad trap_stub_\v
.endr

/* Interrupts (intr.c): the local APIC timer, and IOAPIC pins 0-23 at vectors 0x30-0x47. */
#define IRQ_VECTORS 32,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71
.macro irq_stub v
irq_stub_\v:
    pushq $0
    pushq $\v
    jmp irq_common
.endm

.text
.irp v, IRQ_VECTORS
    irq_stub \v
.endr

.section .rodata
.globl irq_stubs
irq_stubs:
.irp v, IRQ_VECTORS
    .quad \v, irq_stub_\v
.endr
    .quad 0, 0

.macro save_regs
    pushq %rax; pushq %rbx; pushq %rcx; pushq %rdx; pushq %rsi; pushq %rdi; pushq %rbp
    pushq %r8; pushq %r9; pushq %r10; pushq %r11; pushq %r12; pushq %r13; pushq %r14; pushq %r15
    cld
.endm

.macro restore_regs_and_iret
    popq %r15; popq %r14; popq %r13; popq %r12; popq %r11; popq %r10; popq %r9; popq %r8
    popq %rbp; popq %rdi; popq %rsi; popq %rdx; popq %rcx; popq %rbx; popq %rax
    addq $16, %rsp /* vector and error code */
    iretq
.endm

.text
/* Save the general registers, call C with the frame, restore them and IRET. IRET serves
 * every return to ring 3, system calls included: it works on hardware and under PVM. */
trap_common:
    save_regs
    movq %rsp, %rdi
    call trap_dispatch
    restore_regs_and_iret

/* The same for an interrupt: C gets the vector, the one thing it needs. */
irq_common:
    save_regs
    movq 15 * 8(%rsp), %rdi
    call irq_dispatch
    restore_regs_and_iret

/* The local APIC's spurious vector: no handler, and no EOI (SDM vol. 3, 11.9). */
.globl spurious_entry
spurious_entry:
    iretq

/* The SYSCALL entry (MSR_LSTAR). On hardware KVM, SYSCALL lands here in ring 0 still on
 * the user's stack. Under PVM it lands here in ring 3, so this page is user-accessible
 * and the code first asks CS which ring it is in; from ring 3 the way into ring 0 is
 * INT3 through the DPL-3 #BP gate, and bp_entry knows that INT3 by its address.
 * The 128 bytes below RSP are the user's red zone (SysV ABI 3.2.2): step over them. */
.section .user_text, "ax"
.globl syscall_entry, syscall_int3_return
syscall_entry:
    leaq -128(%rsp), %rsp
    pushq %rax
    movl %cs, %eax
    testl $3, %eax
    popq %rax
    leaq 128(%rsp), %rsp /* LEA leaves the flags of TEST alone */
    jz syscall_ring0
    int3
syscall_int3_return: /* never reached: the IRET goes back to the caller's RCX */
    ud2

.text
/* Hardware path: switch to the kernel stack and build the IRET frame an exception from
 * ring 3 would have pushed, so that both paths continue alike. */
syscall_ring0:
    movq %rsp, user_rsp(%rip)
    movq tss_rsp0(%rip), %rsp
    pushq $USER_DS
    pushq user_rsp(%rip)
    pushq %r11
    pushq $USER_CS
    pushq %rcx
    jmp syscall_common

/* The #BP gate: a system call if the INT3 is the one in syscall_entry, else a fault. */
.globl bp_entry
bp_entry:
    cmpq $syscall_int3_return, (%rsp)
    jne trap_stub_3

/* A system call, on the kernel stack below an IRET frame. Linux's convention: number in
 * RAX, arguments in RDI, RSI, RDX, R10, R8, R9, result in RAX; RCX and R11 hold the
 * return address and flags, every other register survives. Under PVM every ring-0
 * instruction here is emulated (about 1 us each), so this path saves only what the C
 * function may clobber, dispatches through a table, and returns with one IRET. */
syscall_common:
    pushq %rcx; pushq %r11; pushq %rdi; pushq %rsi; pushq %rdx; pushq %r8; pushq %r9; pushq %r10
    movq %r10, %rcx /* the C convention's fourth argument register */
    cmpq $NR_SYSCALLS, %rax
    jae 1f
    movq syscall_table(, %rax, 8), %rax
    testq %rax, %rax
    jz 1f
    call *%rax
    jmp 2f
1:  movq $-ENOSYS, %rax
2:  popq %r10; popq %r9; popq %r8; popq %rdx; popq %rsi; popq %rdi; popq %r11; popq %rcx
    movq %rcx, (%rsp)     /* IRET's RIP: the instruction after SYSCALL */
    andq $USER_RFLAGS_MASK, %r11
    orq $RFLAGS_IF | RFLAGS_RESERVED, %r11
    movq %r11, 16(%rsp)   /* IRET's RFLAGS: the caller's, with interrupts on */
    iretq

.data
user_rsp: .quad 0
