/* The boot-info block the VMM leaves for the kernel; its address arrives in RDI.
 * Mirrors vmm/boot/bootinfo.py: change both together. */
#ifndef BOOTINFO_H
#define BOOTINFO_H
#include <stdint.h>

#define BOOT_INFO_MAGIC 0x4d565950u /* "PYVM" */
#define MAX_VIRTIO 4
#define BOOT_FLAG_INTERRUPTS 1 /* take interrupts and sleep in HLT rather than poll */

struct virtio_slot {
    uint64_t base;
    uint32_t size;
    uint32_t irq;
};

struct boot_info {
    uint32_t magic;
    uint32_t version;
    uint64_t mem_size;
    uint64_t low_mem_end;
    uint64_t cmdline_addr;
    uint32_t cmdline_len;
    uint32_t nr_virtio;
    uint64_t program_addr;
    uint64_t program_size;
    uint64_t page_tables;
    uint64_t mmio_base;
    struct virtio_slot virtio[MAX_VIRTIO];
    uint32_t nr_cpus; /* local APIC ids 0 .. nr_cpus - 1; the kernel starts the others */
    uint32_t flags; /* BOOT_FLAG_* */
};
#endif
