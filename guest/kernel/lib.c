/* The few C library routines a freestanding kernel still needs (GCC may emit calls to
 * memcpy and memset by itself). Under PVM a ring-0 string instruction is emulated one
 * iteration at a time (about 1 us each), so copies move 8 bytes an iteration. */
#include "kernel.h"

void *memcpy(void *d, const void *s, size_t n)
{
    void *ret = d;
    size_t words = n / 8, bytes = n % 8;
    __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(words)::"memory");
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(bytes)::"memory");
    return ret;
}

void *memset(void *d, int c, size_t n)
{
    void *ret = d;
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return ret;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] - y[i];
    return 0;
}
