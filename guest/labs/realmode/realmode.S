/* Lab: the journey every x86 boot loader makes, done by hand. pyvmm starts this file in
 * 16-bit real mode at 0x7c00, as a BIOS starts a boot sector. It switches to 32-bit
 * protected mode, then to 64-bit long mode, printing a line through the UART at each
 * stage (Intel SDM vol. 3, 9.9 "Mode switching" and 9.8.5 "Initializing IA-32e mode"),
 * then powers off through pyvmm's exit port with status 0. */

#define COM1 0x3f8
#define UART_LSR 5
#define UART_LSR_THRE 0x20
#define EXIT_PORT 0x501
#define PML4 0x1000 /* page tables built here: PML4, PDPT, one page directory */
#define CR0_PE 1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

/* Print the NUL-terminated string at (E/R)SI, waiting for THRE before each byte. The
 * same source lines assemble to 16-, 32- or 64-bit code, by the .code directive in force
 * where the macro is used. */
.macro uart_puts
1:  lodsb
    testb %al, %al
    jz 3f
    movb %al, %bl
    movw $COM1 + UART_LSR, %dx
2:  inb %dx, %al
    testb $UART_LSR_THRE, %al
    jz 2b
    movw $COM1, %dx
    movb %bl, %al
    outb %al, %dx
    jmp 1b
3:
.endm

.code16
.globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw $0x7c00, %sp
    movw $msg16, %si
    uart_puts
    lgdtl gdt_descriptor
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $0x08, $protected_mode

.code32
protected_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $msg32, %esi
    uart_puts
    /* Identity-map the first 2 MiB with one large page: PML4 -> PDPT -> PD. */
    movl $PML4, %edi
    xorl %eax, %eax
    movl $3 * 1024, %ecx
    rep stosl
    movl $PML4 + 0x1000 + 3, PML4          /* present, writable */
    movl $PML4 + 0x2000 + 3, PML4 + 0x1000
    movl $0x83, PML4 + 0x2000              /* present, writable, 2 MiB page at 0 */
    /* >>> 4: enter long mode (SDM vol. 3, 9.8.5): CR3 = PML4; set CR4.PAE; set EFER.LME
     * ... (rdmsr/wrmsr of MSR_EFER, ECX selects the MSR); set CR0.PG, which activates long
     * ... mode; then a far jump to the 64-bit code segment, selector 0x18, at long_mode */
    movl $PML4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $CR0_PG, %eax                      /* paging on + LME: long mode is active */
    movl %eax, %cr0
    ljmpl $0x18, $long_mode
    /* <<< */

.code64
long_mode:
    leaq msg64(%rip), %rsi
    uart_puts
    movw $EXIT_PORT, %dx
    xorb %al, %al
    outb %al, %dx
    hlt

msg16: .asciz "realmode lab: 16-bit real mode\n"
msg32: .asciz "realmode lab: 32-bit protected mode\n"
msg64: .asciz "realmode lab: 64-bit long mode\n"

.balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff /* 0x10: data */
    .quad 0x00af9a000000ffff /* 0x18: 64-bit code */
gdt_descriptor:
    .word gdt_descriptor - gdt - 1
    .long gdt
