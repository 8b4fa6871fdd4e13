/* A virtio-blk driver over virtio-mmio (virtio 1.2: 4.2 the MMIO transport, 2.7 split
 * virtqueues, 5.2 the block device). One request in flight at a time, three descriptors.
 *
 * Polled, not interrupt-driven: the driver notifies the device and then watches the used
 * ring. pyvmm serves a notification inside the vCPU's exit (or, with ioeventfd, on an I/O
 * thread within microseconds), so the request is usually complete by the time the guest
 * looks, and waiting for an interrupt would only add the cost of taking one -- on PVM an
 * emulated exception entry and IRET in ring 0, about as much as the request's exit
 * itself. So the driver asks the device not to interrupt at all (VIRTQ_AVAIL_F_NO_INTERRUPT,
 * 2.7.7): on this machine an interrupt injected through irqfd costs the VMM some 400 us
 * even with the line masked. With interrupts on (`pyvmm boot --interrupts`, intr.c) it
 * takes the used-buffer notification instead and sleeps in HLT until it comes. */
#include "kernel.h"
#include "virtio.h"

#define VIRTIO_ID_BLOCK 2

/* Features (5.2.3) and requests (5.2.6). */
#define VIRTIO_BLK_F_RO (1u << 5)
#define VIRTIO_BLK_F_FLUSH (1u << 9)
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1

#define SECTOR 512

struct blk_req_header {
    uint32_t type, reserved;
    uint64_t sector;
};

struct vblk {
    volatile uint32_t *regs;
    uint64_t capacity; /* in sectors */
    int readonly;
    struct virtq q; /* one request at a time: three descriptors */
    struct blk_req_header header;
    volatile uint8_t status;
    uint8_t bounce[SECTOR] __attribute__((aligned(SECTOR)));
};

static struct vblk disks[MAX_VIRTIO];
static int nr_disks;

static inline uint32_t rd(struct vblk *d, int reg) { return virtio_rd(d->regs, reg); }

/* The driver initialisation sequence of 3.1.1, for the MMIO transport (4.2.3.1-2). */
static int probe(struct vblk *d, uint64_t base)
{
    d->regs = (volatile uint32_t *)base;
    int64_t offered = virtio_start(d->regs, VIRTIO_ID_BLOCK, VIRTIO_BLK_F_RO | VIRTIO_BLK_F_FLUSH);
    if (offered < 0)
        return 0;
    d->readonly = !!(offered & VIRTIO_BLK_F_RO);
    d->q.avail.flags = interrupts_on ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT;
    /* The parts of the three descriptors that never change: 0 the header, 2 the status. */
    d->q.desc[0] = (struct virtq_desc){(uint64_t)&d->header, sizeof(d->header), VIRTQ_DESC_F_NEXT, 1};
    d->q.desc[1].next = 2;
    d->q.desc[2] = (struct virtq_desc){(uint64_t)&d->status, 1, VIRTQ_DESC_F_WRITE, 0};
    if (!virtio_queue(d->regs, 0, &d->q))
        return 0;
    virtio_driver_ok(d->regs);

    /* Capacity is a 64-bit field read as two 32-bit halves: retry if the config
     * generation moved in between (4.2.2.2, 2.5.1). */
    uint32_t gen;
    do {
        gen = rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
        d->capacity = rd(d, VIRTIO_MMIO_CONFIG) | (uint64_t)rd(d, VIRTIO_MMIO_CONFIG + 4) << 32;
    } while (gen != rd(d, VIRTIO_MMIO_CONFIG_GENERATION));
    return 1;
}

/* The used-buffer notification: acknowledge it, so the device may raise the next. The
 * waiting driver (post_and_wait) looks at the used ring itself when it wakes. */
static void virtio_irq(int disk)
{
    struct vblk *d = &disks[disk];
    virtio_wr(d->regs, VIRTIO_MMIO_INTERRUPT_ACK, rd(d, VIRTIO_MMIO_INTERRUPT_STATUS));
    irq_counts.virtio++;
}

void virtio_blk_init(const struct boot_info *bi)
{
    for (uint32_t i = 0; i < bi->nr_virtio && i < MAX_VIRTIO; i++)
        if (probe(&disks[nr_disks], bi->virtio[i].base)) {
            if (interrupts_on) /* irqfd pulses the GSI: edge-triggered */
                irq_route(bi->virtio[i].irq, 0, virtio_irq, nr_disks);
            kprintf("virtio-blk: vd%c, %u sectors%s\n", 'a' + nr_disks, disks[nr_disks].capacity,
                    disks[nr_disks].readonly ? ", read-only" : "");
            nr_disks++;
        }
}

int virtio_blk_count(void) { return nr_disks; }

#define NEEDS_RESET (-1)
#define POLLS_PER_STATUS_CHECK 4096

/* Make the chain at descriptor 0 available, notify, and wait for the device to use it.
 * Returns the request's status byte, or NEEDS_RESET if the device gave up on the queue
 * (it then never uses the chain, so the wait also watches the device status). */
static int post_and_wait(struct vblk *d)
{
    d->status = 0xff;
    d->q.avail.ring[d->q.avail.idx % VIRTQ_SIZE] = 0;
    barrier();
    d->q.avail.idx++;
    barrier();
    virtio_wr(d->regs, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    for (unsigned polls = 1; *(volatile uint16_t *)&d->q.used.idx == d->q.last_used; polls++) {
        if (interrupts_on) /* the used-buffer notification, or the timer's next tick */
            wait_for_interrupt();
        else
            __asm__ volatile("pause");
        if ((interrupts_on || polls % POLLS_PER_STATUS_CHECK == 0) &&
            rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
            return NEEDS_RESET;
    }
    d->q.last_used++;
    return d->status;
}

/* One request: descriptor 0 the header, 1 the data (left out when there is none), 2 the
 * status byte. Returns 0 when the device answered VIRTIO_BLK_S_OK. Only what changes
 * is written: each ring-0 store is an emulated instruction under PVM. */
static int submit(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
    d->header.type = type;
    d->header.sector = sector;
    d->q.desc[0].next = len ? 1 : 2;
    d->q.desc[1].addr = (uint64_t)buf;
    d->q.desc[1].len = len;
    d->q.desc[1].flags = VIRTQ_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0);
    return post_and_wait(d) == VIRTIO_BLK_S_OK ? 0 : -1;
}

#define EIO 5
#define EBADF 9
#define EROFS 30

#define MAX_REQUEST 0x40000000 /* a descriptor's length is 32 bits; stay well inside */

/* The general case: whole sectors go straight between the disk and the caller's
 * buffer; a partial sector at either end goes through the bounce sector
 * (read-modify-write for writes). Returns bytes done, or -errno. */
static __attribute__((noinline)) int64_t rw_any(struct vblk *d, int write, uint8_t *buf,
                                                uint64_t count, uint64_t offset)
{
    uint64_t done = 0;
    while (done < count) {
        uint64_t pos = offset + done, sector = pos / SECTOR, skip = pos % SECTOR;
        uint64_t n;
        if (skip || count - done < SECTOR) {
            n = SECTOR - skip < count - done ? SECTOR - skip : count - done;
            if (submit(d, VIRTIO_BLK_T_IN, sector, d->bounce, SECTOR))
                return done ? (int64_t)done : -EIO;
            if (write) {
                memcpy(d->bounce + skip, buf + done, n);
                if (submit(d, VIRTIO_BLK_T_OUT, sector, d->bounce, SECTOR))
                    return done ? (int64_t)done : -EIO;
            } else {
                memcpy(buf + done, d->bounce + skip, n);
            }
        } else {
            n = (count - done) & ~(uint64_t)(SECTOR - 1);
            if (n > MAX_REQUEST)
                n = MAX_REQUEST;
            if (submit(d, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, sector, buf + done, n))
                return done ? (int64_t)done : -EIO;
        }
        done += n;
    }
    return done;
}

/* Read or write ``count`` bytes at byte ``offset`` of a disk; returns bytes done or
 * -errno. Whole sectors at a sector boundary, the workload's every request, take one
 * request straight into the caller's buffer; anything else takes the general path. */
int64_t virtio_blk_rw(int disk, int write, uint8_t *buf, uint64_t count, uint64_t offset)
{
    if ((unsigned)disk >= (unsigned)nr_disks)
        return -EBADF;
    struct vblk *d = &disks[disk];
    if (write && d->readonly)
        return -EROFS;
    uint64_t size = d->capacity * SECTOR;
    if (offset >= size)
        return 0;
    if (count > size - offset)
        count = size - offset;
    if (!((offset | count) & (SECTOR - 1)) && count && count <= MAX_REQUEST)
        return submit(d, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, offset / SECTOR, buf, count)
                   ? -EIO
                   : (int64_t)count;
    return rw_any(d, write, buf, count, offset);
}

int virtio_blk_flush(int disk)
{
    if (disk < 0 || disk >= nr_disks)
        return -EBADF;
    return submit(&disks[disk], VIRTIO_BLK_T_FLUSH, 0, 0, 0) ? -EIO : 0;
}

/* Guest test mode ("virtio_selftest" on the command line): requests a buggy or hostile
 * driver could send, each of which the VMM must refuse without crashing or hanging:
 * IOERR for a bad request, NEEDS_RESET for a broken queue, then a reset and a good read. */
static void expect(const char *what, int got, int want)
{
    kprintf("selftest: %s: %s\n", what, got == want ? "refused as expected" : "NOT REFUSED");
}

void virtio_blk_selftest(void)
{
    if (!nr_disks) {
        kprintf("selftest: no disk\n");
        return;
    }
    struct vblk *d = &disks[0];
    uint8_t *bounce = d->bounce;
    expect("sector past the end", submit(d, VIRTIO_BLK_T_IN, d->capacity, bounce, SECTOR), -1);
    expect("buffer outside guest memory",
           submit(d, VIRTIO_BLK_T_IN, 0, (void *)0x7ff000000000ull, SECTOR), -1);
    expect("length not a whole sector", submit(d, VIRTIO_BLK_T_IN, 0, bounce, 100), -1);

    /* A header cut short: 8 of its 16 bytes. */
    submit(d, VIRTIO_BLK_T_IN, 0, bounce, SECTOR); /* fills the descriptors */
    d->q.desc[0].len = 8;
    expect("header too short", post_and_wait(d), VIRTIO_BLK_S_IOERR);

    /* Data the device must write placed in a device-readable buffer. */
    d->q.desc[0].len = sizeof(d->header);
    d->q.desc[1].flags = VIRTQ_DESC_F_NEXT;
    expect("read into a device-readable buffer", post_and_wait(d), VIRTIO_BLK_S_IOERR);

    /* A chain that loops back to its start: the device must see the loop and give up. */
    d->q.desc[1].flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE;
    d->q.desc[2].flags = VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT;
    d->q.desc[2].next = 0;
    expect("descriptor loop", post_and_wait(d), NEEDS_RESET);

    /* After a reset the device serves good requests again. */
    uint64_t base = (uint64_t)d->regs;
    memset(d, 0, sizeof(*d));
    int ok = probe(d, base) && submit(d, VIRTIO_BLK_T_IN, 0, bounce, SECTOR) == 0;
    kprintf("selftest: read after reset: %s\n", ok ? "ok" : "FAILED");
}
