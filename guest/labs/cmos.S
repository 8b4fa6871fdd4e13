/* Lab 3's guest: reads the time from a CMOS real-time clock, as a PC BIOS does, and
 * prints it. Select a register by writing its number to the index port 0x70, then
 * read it from the data port 0x71 (the MC146818 datasheet; OSDev's "CMOS" page):
 * register 0 holds the seconds, 2 the minutes, 4 the hours, each in BCD. Then it
 * powers off through pyvmm's exit port with status 0. */

#define COM1 0x3f8
#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define EXIT_PORT 0x501

.code16
.globl _start
_start:
    xorw %ax, %ax
    movw %ax, %ds
    cld
    movw $prefix, %si
    call puts
    movb $4, %cl                 /* hours */
    call print_register
    movb $':', %al
    call putc
    movb $2, %cl                 /* minutes */
    call print_register
    movb $':', %al
    call putc
    movb $0, %cl                 /* seconds */
    call print_register
    movb $'\n', %al
    call putc
    movw $EXIT_PORT, %dx
    xorb %al, %al
    outb %al, %dx
    hlt

/* Read CMOS register CL and print it as two BCD digits. */
print_register:
    movb %cl, %al
    outb %al, $CMOS_INDEX
    inb $CMOS_DATA, %al
    movb %al, %ch
    shrb $4, %al
    addb $'0', %al
    call putc
    movb %ch, %al
    andb $0x0f, %al
    addb $'0', %al
    call putc
    ret

putc:
    movw $COM1, %dx
    outb %al, %dx
    ret

puts:
1:  lodsb
    testb %al, %al
    jz 2f
    call putc
    jmp 1b
2:  ret

prefix: .asciz "cmos lab: the RTC says "
