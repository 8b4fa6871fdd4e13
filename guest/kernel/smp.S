/* Where an application processor starts: a SIPI with vector v starts it in real mode at
 * v * 4096 (CS = v << 8, IP = 0; SDM vol. 3, 8.4.4). smp.c copies this page to
 * AP_TRAMPOLINE and fills in the fields at its end; the code climbs from real mode
 * straight to long mode (PAE, the kernel's page tables, EFER.LME, then CR0.PE and PG
 * together and a far jump to a 64-bit code segment) and calls ap_main() on the stack the
 * boot CPU gave it. Everything is addressed relative to the page, so it runs wherever it
 * is copied. */
#include "smp.h"

#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define AT(label) (AP_TRAMPOLINE + (label) - ap_trampoline)

.section .rodata
.balign 16
.globl ap_trampoline, ap_trampoline_end
.code16
ap_trampoline:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl tr_gdtr - ap_trampoline
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl tr_cr3 - ap_trampoline, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $CR0_PE | CR0_PG, %eax
    movl %eax, %cr0
    ljmpl $KERNEL_CS, $AT(ap_long)

.code64
ap_long:
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movq AT(tr_stack), %rsp
    movq AT(tr_cpu), %rdi
    movq AT(tr_entry), %rax
    call *%rax
1:  cli
    hlt
    jmp 1b

.balign 8
tr_gdt: /* null, 64-bit kernel code, kernel data: the kernel's own selectors */
    .quad 0, 0x00af9a000000ffff, 0x00cf92000000ffff
tr_gdtr:
    .word 3 * 8 - 1
    .long AT(tr_gdt)
.balign 8
.globl ap_trampoline_args
ap_trampoline_args: /* struct ap_args in smp.h */
tr_cr3: .quad 0
tr_stack: .quad 0
tr_cpu: .quad 0
tr_entry: .quad 0
ap_trampoline_end:
