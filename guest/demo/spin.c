/* Busy for a while in ring 3, then exit 0: the boot CPU's share of `pyvmm bench vcpus`,
 * which measures that N busy vCPUs keep N host CPUs busy. argv[1]: millions of loop
 * iterations (default 500). No system call until the end, so no exit either. */

#define SYS_exit_group 231

int main(int argc, char **argv)
{
    unsigned long millions = 0;
    if (argc > 1)
        for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++)
            millions = millions * 10 + (*p - '0');
    if (!millions)
        millions = 500;
    for (volatile unsigned long i = 0; i < millions * 1000000; i++)
        ;
    __asm__ volatile("syscall" ::"a"(SYS_exit_group), "D"(0) : "rcx", "r11", "memory");
    return 0;
}
