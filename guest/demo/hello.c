/* The demo program: a static Linux executable with no C library, run by the tiny kernel
 * in ring 3. It proves where it runs (the low two bits of CS are the privilege level),
 * echoes its arguments, and exits with the status given as its first argument. */

#define SYS_write 1
#define SYS_exit_group 231

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

static void put(const char *s) { syscall3(SYS_write, 1, (long)s, len(s)); }

int main(int argc, char **argv)
{
    unsigned short cs;
    __asm__("mov %%cs, %0" : "=r"(cs));
    char ring[] = "hello from ring ?, through the write system call\n";
    ring[16] = '0' + (cs & 3);
    put(ring);
    int status = 0;
    for (int i = 1; i < argc; i++) {
        put("arg: ");
        put(argv[i]);
        put("\n");
    }
    if (argc > 1)
        for (const char *p = argv[1]; *p >= '0' && *p <= '9'; p++)
            status = status * 10 + (*p - '0');
    return status;
}
