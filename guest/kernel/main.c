/* The tiny kernel: say hello on the UART, set up the CPU, run the program in ring 3. */
#include "kernel.h"

void kmain(const struct boot_info *bi)
{
    uart_init();
    if (bi->magic != BOOT_INFO_MAGIC)
        panic("no boot info from the VMM");
    kprintf("pyvmm tiny kernel: %u MiB of memory, command line \"", bi->mem_size >> 20);
    uart_write((const char *)bi->cmdline_addr, bi->cmdline_len);
    kprintf("\"\n");
    cpu_init();
    virtio_blk_init(bi);
    run_program(bi);
}
