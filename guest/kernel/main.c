/* The tiny kernel: say hello on the UART, set up the CPU, run the program in ring 3. */
#include "kernel.h"

/* Is ``word`` one of the words of the kernel command line (before any "--")? */
int cmdline_has(const struct boot_info *bi, const char *word)
{
    const char *p = (const char *)bi->cmdline_addr, *end = p + bi->cmdline_len;
    size_t n = strlen(word);
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *start = p;
        while (p < end && *p != ' ')
            p++;
        if (p - start == 2 && start[0] == '-' && start[1] == '-')
            return 0;
        if ((size_t)(p - start) == n && !memcmp(start, word, n))
            return 1;
    }
    return 0;
}

void kmain(const struct boot_info *bi)
{
    uart_init();
    if (bi->magic != BOOT_INFO_MAGIC)
        panic("no boot info from the VMM");
    kprintf("pyvmm tiny kernel: %u MiB of memory, command line \"", bi->mem_size >> 20);
    uart_write((const char *)bi->cmdline_addr, bi->cmdline_len);
    kprintf("\"\n");
    cpu_init();
    race_init(bi);
    smp_boot(bi); /* before interrupts: the others print with the polling driver */
    race(0);
    interrupts_init(bi);
    if (interrupts_on)
        uart_enable_interrupts();
    virtio_blk_init(bi);
    if (cmdline_has(bi, "virtio_selftest"))
        virtio_blk_selftest();
    virtio_net_init(bi);
    if (cmdline_has(bi, "net_hello"))
        virtio_net_hello();
    run_program(bi);
}
