/* The counter: prints "count N" for N = 1, 2, 3, ... forever, a line every few tens of
 * milliseconds. Its whole state is N in memory and the registers, so a guest that was
 * snapshotted or migrated and counts on from where it was (not from 1) shows that its
 * state was carried over, not rebooted (docs/state.md). An argument limits the count;
 * the program then exits with status 0. */

#define SYS_write 1

/* Spin iterations between lines: ring 3 runs natively, so some 20-50 ms here. */
#define DELAY 20000000UL

static long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static unsigned long number(const char *p)
{
    unsigned long n = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        n = n * 10 + (*p - '0');
    return n;
}

int main(int argc, char **argv)
{
    unsigned long limit = argc > 1 ? number(argv[1]) : 0;
    for (unsigned long n = 1; !limit || n <= limit; n++) {
        char line[32] = "count ";
        char digits[24];
        int len = 0, at = 6;
        unsigned long v = n;
        do
            digits[len++] = '0' + v % 10;
        while (v /= 10);
        while (len)
            line[at++] = digits[--len];
        line[at++] = '\n';
        syscall3(SYS_write, 1, (long)line, at);
        for (volatile unsigned long i = 0; i < DELAY; i++)
            ;
    }
    return 0;
}
