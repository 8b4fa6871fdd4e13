/* Lab 24's workload: writes one byte in each of PAGES pages of a buffer, pass after pass,
 * with a pause between passes, so that every pass dirties those pages again and nothing
 * else of its own but its stack. It says where the buffer is (its guest-physical address:
 * the tiny kernel maps a program one to one), then "done" after PASSES passes:
 *
 *     dirty PAGES PASSES */

#include "demo.h"
#define MAX_PAGES 1024
#define PAGE 4096
#define DELAY 10000000UL /* spin iterations between passes: some 10-30 ms here */

static char buffer[MAX_PAGES * PAGE] __attribute__((aligned(PAGE)));

static void say(const char *what, unsigned long v, unsigned base, const char *then)
{
    char line[80], digits[24];
    int at = 0, len = 0;
    while (*what)
        line[at++] = *what++;
    do
        digits[len++] = "0123456789abcdef"[v % base];
    while (v /= base);
    while (len)
        line[at++] = digits[--len];
    while (*then)
        line[at++] = *then++;
    syscall3(SYS_write, 1, (long)line, at);
}

int main(int argc, char **argv)
{
    unsigned long pages = argc > 1 ? number(argv[1]) : 64, passes = argc > 2 ? number(argv[2]) : 50;
    if (pages > MAX_PAGES)
        pages = MAX_PAGES;
    say("buffer 0x", (unsigned long)buffer, 16, "");
    say(", pages ", pages, 10, "\n");
    for (unsigned long pass = 0; pass < passes; pass++) {
        for (unsigned long p = 0; p < pages; p++)
            ((volatile char *)buffer)[p * PAGE] = (char)pass;
        for (volatile unsigned long i = 0; i < DELAY; i++)
            ;
    }
    say("done after ", passes, 10, " passes\n");
    return 0;
}
