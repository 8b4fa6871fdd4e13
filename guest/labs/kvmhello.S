/* Lab 2's guest: the smallest program a KVM run loop can run. Started in 16-bit real
 * mode at 0x7c00, it writes its line byte by byte to the UART's data port (0x3f8) with
 * OUT, each one a VM exit, then halts. It does not wait for the UART (no LSR reads), so
 * a run loop needs to handle just two exits: IO out and HLT. The check puts a fresh
 * word in place of NONCE--- each time and XORs the line, its NUL included, with a key
 * it puts in the XOR below (0 here): the line is nowhere in the binary it runs, only
 * in the OUTs. It also counts the exits the run loop got. */

#define COM1 0x3f8

.code16
.globl _start
_start:
    xorw %ax, %ax
    movw %ax, %ds
    cld
    movw $msg, %si
    movw $COM1, %dx
1:  lodsb
    xorb $0, %al /* the key: the check changes it, and the line with it */
    testb %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  hlt

msg: .ascii "hello from the guest your run loop ran: "
nonce: .asciz "NONCE---\n"
