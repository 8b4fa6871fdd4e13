/* Lab 7's guest: two things a VMM must report well. First it reads the byte at 1 MiB
 * (segment 0xffff, offset 0x10), where a 1 MiB guest has no RAM: KVM cannot complete
 * the load and exits to the VMM with KVM_EXIT_MMIO, which should answer as a PC's bus
 * does, all ones. The guest says what it got. Then it enters 32-bit protected mode,
 * loads an empty interrupt descriptor table and executes ud2: the CPU cannot deliver
 * the invalid-opcode exception (#UD), nor the #GP that causes, nor the double fault
 * (#DF), and shuts down, a *triple fault*: KVM_EXIT_SHUTDOWN (Intel SDM vol. 3A, 6.15,
 * "Interrupt 8, Double Fault Exception"). */

#define COM1 0x3f8

.code16
.globl _start
_start:
    xorw %ax, %ax
    movw %ax, %ds
    cld
    movw $hello, %si
    call puts
    movw $0xffff, %ax
    movw %ax, %es
    movb %es:0x10, %al           /* guest-physical 0x100000: no memory there */
    movw $ones, %si
    cmpb $0xff, %al
    je 1f
    movw $other, %si
1:  call puts
    cli
    lgdtl gdt_descriptor
    movl %cr0, %eax
    orl $1, %eax                 /* CR0.PE */
    movl %eax, %cr0
    ljmpl $0x08, $protected_mode

.code32
protected_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %ss
    lidt empty_idt
    ud2                          /* the fault: the report should point here */
    hlt

.code16
puts:
    movw $COM1, %dx
2:  lodsb
    testb %al, %al
    jz 3f
    outb %al, %dx
    jmp 2b
3:  ret

hello: .asciz "fault lab: reading the byte at 1 MiB\n"
ones: .asciz "fault lab: it reads as all ones, like a PC bus with nothing there\n"
other: .asciz "fault lab: it does not read as all ones\n"
.balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff     /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff     /* 0x10: data */
gdt_descriptor:
    .word gdt_descriptor - gdt - 1
    .long gdt
empty_idt:
    .word 0                      /* limit 0: no vector can be delivered */
    .long 0
