/* The kernel's first instruction. pyvmm enters here in 64-bit mode with paging on (its
 * own identity map), interrupts off, and the boot-info block's address in RDI, which is
 * also where the SysV ABI puts kmain()'s first argument. */
.section .text.entry, "ax"
.globl _start
_start:
    cli
    leaq boot_stack_top(%rip), %rsp
    call kmain
1:  hlt
    jmp 1b

.bss
.balign 16
    .space 16384
boot_stack_top:
