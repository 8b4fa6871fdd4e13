/* pyvmm-exit STATUS: the last thing the Linux guest's /init runs. It hands STATUS to
 * pyvmm's exit port (0x501, vmm/devices/power.py), which ends the VM with that status:
 * Linux without ACPI can only halt on "poweroff", and a halted vCPU never exits to the
 * VMM. ioperm(2) grants this process the one port; no libc, so the binary is tiny. */
#define EXIT_PORT 0x501
#define SYS_exit 60
#define SYS_ioperm 173

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

__attribute__((used)) void run(int argc, char **argv)
{
    unsigned char status = 0;
    for (const char *p = argc > 1 ? argv[1] : "0"; *p >= '0' && *p <= '9'; p++)
        status = (unsigned char)(status * 10 + (*p - '0'));
    if (syscall3(SYS_ioperm, EXIT_PORT, 1, 1) == 0)
        __asm__ volatile("outb %0, %1" : : "a"(status), "Nd"((unsigned short)EXIT_PORT));
    syscall3(SYS_exit, 127, 0, 0); /* only if the port did not stop the VM */
}

__attribute__((naked, noreturn)) void _start(void)
{
    /* argc at (%rsp), argv after it (System V ABI, process entry) */
    __asm__ volatile("movq (%rsp), %rdi\n\tleaq 8(%rsp), %rsi\n\tandq $-16, %rsp\n\tcall run\n\tud2");
}
