/* What the tiny kernel's virtio drivers share (virtio 1.2): the MMIO transport's
 * registers (4.2.2), device status (2.1), split virtqueues (2.7) and the driver's
 * initialisation sequence (3.1.1), so that each driver says only what is its own. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include <stdint.h>

/* Registers (4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE 0x000
#define VIRTIO_MMIO_VERSION 0x004
#define VIRTIO_MMIO_DEVICE_ID 0x008
#define VIRTIO_MMIO_DEVICE_FEATURES 0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES 0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL 0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX 0x034
#define VIRTIO_MMIO_QUEUE_NUM 0x038
#define VIRTIO_MMIO_QUEUE_READY 0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY 0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS 0x060
#define VIRTIO_MMIO_INTERRUPT_ACK 0x064
#define VIRTIO_MMIO_STATUS 0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW 0x080
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_MMIO_CONFIG_GENERATION 0x0fc
#define VIRTIO_MMIO_CONFIG 0x100
#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */

/* Device status (2.1). */
#define VIRTIO_CONFIG_S_ACKNOWLEDGE 1
#define VIRTIO_CONFIG_S_DRIVER 2
#define VIRTIO_CONFIG_S_DRIVER_OK 4
#define VIRTIO_CONFIG_S_FEATURES_OK 8
#define VIRTIO_CONFIG_S_NEEDS_RESET 64

#define VIRTIO_F_VERSION_1_HI (1u << 0) /* feature bit 32 (6), in the upper feature word */

/* Descriptor flags (2.7.5) and the driver's "no interrupt, please" (2.7.7). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define VIRTQ_SIZE 8 /* enough for one request or frame in flight at a time */

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
struct virtq_avail {
    uint16_t flags, idx, ring[VIRTQ_SIZE];
};
struct virtq_used {
    uint16_t flags, idx;
    struct { uint32_t id, len; } ring[VIRTQ_SIZE];
};
/* One split virtqueue, its three parts aligned as 2.7 requires, and how far the driver
 * has read the used ring. */
struct virtq {
    struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(16)));
    struct virtq_avail avail __attribute__((aligned(2)));
    struct virtq_used used __attribute__((aligned(4)));
    uint16_t last_used;
};

static inline uint32_t virtio_rd(volatile uint32_t *regs, int reg) { return regs[reg / 4]; }
static inline void virtio_wr(volatile uint32_t *regs, int reg, uint32_t v) { regs[reg / 4] = v; }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* virtio.c: 3.1.1 steps 1-6 (a device of ``device_id`` at ``regs``, VERSION_1, the
 * features of ``wanted`` it offers: returned, or -1 when the device is not one), a
 * queue set up (0 if the device's is too small), and step 8, DRIVER_OK. */
int64_t virtio_start(volatile uint32_t *regs, uint32_t device_id, uint32_t wanted);
int virtio_queue(volatile uint32_t *regs, int index, struct virtq *q);
void virtio_driver_ok(volatile uint32_t *regs);
#endif
