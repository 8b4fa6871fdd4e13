/* What the demo programs share: Linux's system-call convention (x86-64 SysV ABI, A.2.1:
 * number in rax, arguments in rdi, rsi, rdx; rcx and r11 clobbered by SYSCALL) and
 * reading a decimal argument. No C library: each program is linked with start.S only. */
#ifndef DEMO_H
#define DEMO_H

#define SYS_write 1

static inline long syscall3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

static inline unsigned long number(const char *p)
{
    unsigned long n = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        n = n * 10 + (*p - '0');
    return n;
}
#endif
