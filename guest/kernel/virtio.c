/* The driver side of the virtio-mmio transport that every driver of the tiny kernel
 * takes the same way (virtio.h). */
#include "virtio.h"

static void set_address(volatile uint32_t *regs, int low_reg, const void *p)
{
    virtio_wr(regs, low_reg, (uint32_t)(uint64_t)p);
    virtio_wr(regs, low_reg + 4, (uint32_t)((uint64_t)p >> 32));
}

/* 3.1.1 steps 1-6 for the MMIO transport (4.2.3.1-2). */
int64_t virtio_start(volatile uint32_t *regs, uint32_t device_id, uint32_t wanted)
{
    if (virtio_rd(regs, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC ||
        virtio_rd(regs, VIRTIO_MMIO_VERSION) != 2 || virtio_rd(regs, VIRTIO_MMIO_DEVICE_ID) != device_id)
        return -1;
    virtio_wr(regs, VIRTIO_MMIO_STATUS, 0);
    virtio_wr(regs, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);

    virtio_wr(regs, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    if (!(virtio_rd(regs, VIRTIO_MMIO_DEVICE_FEATURES) & VIRTIO_F_VERSION_1_HI))
        return -1;
    virtio_wr(regs, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t features = virtio_rd(regs, VIRTIO_MMIO_DEVICE_FEATURES) & wanted;
    virtio_wr(regs, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    virtio_wr(regs, VIRTIO_MMIO_DRIVER_FEATURES, features);
    virtio_wr(regs, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    virtio_wr(regs, VIRTIO_MMIO_DRIVER_FEATURES, VIRTIO_F_VERSION_1_HI);
    virtio_wr(regs, VIRTIO_MMIO_STATUS,
              VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    if (!(virtio_rd(regs, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK))
        return -1;
    return features;
}

/* Step 7 for one queue (4.2.3.2). */
int virtio_queue(volatile uint32_t *regs, int index, struct virtq *q)
{
    virtio_wr(regs, VIRTIO_MMIO_QUEUE_SEL, index);
    if (virtio_rd(regs, VIRTIO_MMIO_QUEUE_NUM_MAX) < VIRTQ_SIZE)
        return 0;
    virtio_wr(regs, VIRTIO_MMIO_QUEUE_NUM, VIRTQ_SIZE);
    set_address(regs, VIRTIO_MMIO_QUEUE_DESC_LOW, q->desc);
    set_address(regs, VIRTIO_MMIO_QUEUE_DRIVER_LOW, &q->avail);
    set_address(regs, VIRTIO_MMIO_QUEUE_DEVICE_LOW, &q->used);
    virtio_wr(regs, VIRTIO_MMIO_QUEUE_READY, 1);
    return 1;
}

void virtio_driver_ok(volatile uint32_t *regs)
{
    virtio_wr(regs, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                            VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}
