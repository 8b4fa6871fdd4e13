/* A lab-sized virtio-net driver (virtio 1.2 section 5.1) over virtio-mmio: it sends one
 * Ethernet frame and receives one, from ring 0, with nothing between the card and the
 * wire but the two virtqueues. Lab 29 ("a virtio-net frame, end to end") is written here.
 *
 * Queue 0 is receiveq1, queue 1 transmitq1 (5.1.2). Every buffer on either starts with a
 * struct virtio_net_hdr (5.1.6): 12 bytes with VIRTIO_F_VERSION_1, all zero for a frame
 * that asks for no offload. The driver takes no feature but MAC and, like virtio_blk.c,
 * polls the used ring with the device's interrupts off. On the host the frame crosses
 * pyvmm's device (vmm/devices/virtio/net.py) into a TAP with one writev, header and all;
 * the host kernel's tun driver reads the header and the rest is the frame on the wire.
 *
 * "net_hello" on the command line sends a broadcast frame of ethertype ETH_P_LAB from the
 * card's MAC, then waits for a frame of that type for it and prints what it says. */
#include "kernel.h"
#include "virtio.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_F_MAC (1u << 5) /* 5.1.3: the MAC is in config space (5.1.4) */
#define RECEIVEQ 0
#define TRANSMITQ 1

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_DATA_LEN 1500
#define ETH_P_LAB 0x88b5 /* IEEE 802 "local experimental ethertype 1": no one else's */
#define HELLO "hello from the tiny kernel"
#define POLLS_PER_STATUS_CHECK 4096
/* The deadline: under a second on a 3 GHz TSC; measured 11 s under this host's PVM, whose
 * guest TSC counts at some 200 MHz. The answer takes milliseconds. */
#define WAIT_TICKS (2ull << 30)
#define MAX_OTHER_FRAMES 16 /* frames of other types taken before giving up */

struct virtio_net_hdr { /* 5.1.6 */
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
};
struct eth_frame {
    uint8_t dst[ETH_ALEN], src[ETH_ALEN];
    uint16_t type; /* big-endian on the wire, as every field of a network header */
    uint8_t payload[ETH_DATA_LEN];
} __attribute__((packed));
struct packet { /* what one buffer on either queue holds */
    struct virtio_net_hdr hdr;
    struct eth_frame eth;
} __attribute__((packed));

static struct vnet {
    volatile uint32_t *regs;
    uint8_t mac[ETH_ALEN];
    struct virtq rx, tx;
    struct packet rx_buf, tx_buf;
} card;
static int present;

/* aa:bb:cc:dd:ee:ff, the way ip link shows it */
static void print_mac(const uint8_t *mac)
{
    static const char hex[] = "0123456789abcdef";
    char text[3 * ETH_ALEN];
    for (int b = 0; b < ETH_ALEN; b++) {
        text[3 * b] = hex[mac[b] >> 4];
        text[3 * b + 1] = hex[mac[b] & 15];
        text[3 * b + 2] = ':';
    }
    uart_write(text, sizeof(text) - 1);
}

static inline uint16_t htons(uint16_t v) { return (uint16_t)(v << 8 | v >> 8); }

/* Give the device one buffer on queue ``index`` (descriptor 0 of ``q``: one buffer in
 * flight per queue), device-writable if it is to receive into it. */
static void post(struct virtq *q, int index, void *buf, uint32_t len, int device_writes)
{
    /* >>> 29: describe the buffer in descriptor 0 (2.7.5: a receive buffer is one the
     * ... device writes), put the descriptor's index in the available ring's next slot,
     * ... then publish the slot by incrementing avail.idx (a barrier() before and after:
     * ... the device must never see the index before the slot), and notify the device of
     * ... this queue: its index to QueueNotify (4.2.2) */
    q->desc[0] = (struct virtq_desc){(uint64_t)buf, len, device_writes ? VIRTQ_DESC_F_WRITE : 0, 0};
    q->avail.ring[q->avail.idx % VIRTQ_SIZE] = 0;
    barrier();
    q->avail.idx++;
    barrier();
    virtio_wr(card.regs, VIRTIO_MMIO_QUEUE_NOTIFY, index);
    /* <<< */
}

/* Wait for the device to give back the buffer posted on ``q``: its used length, or -1
 * when it gives up on the queue (NEEDS_RESET) or does not answer by the deadline. */
static int64_t wait_used(struct virtq *q)
{
    uint64_t deadline = rdtsc() + WAIT_TICKS;
    for (unsigned polls = 1; *(volatile uint16_t *)&q->used.idx == q->last_used; polls++) {
        __asm__ volatile("pause");
        if (rdtsc() > deadline || (polls % POLLS_PER_STATUS_CHECK == 0 &&
                                   virtio_rd(card.regs, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET))
            return -1;
    }
    return q->used.ring[q->last_used++ % VIRTQ_SIZE].len;
}

void virtio_net_init(const struct boot_info *bi)
{
    for (uint32_t i = 0; i < bi->nr_virtio && i < MAX_VIRTIO && !present; i++) {
        card.regs = (volatile uint32_t *)bi->virtio[i].base;
        int64_t features = virtio_start(card.regs, VIRTIO_ID_NET, VIRTIO_NET_F_MAC);
        if (features < 0 || !(features & VIRTIO_NET_F_MAC))
            continue;
        card.rx.avail.flags = card.tx.avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
        if (!virtio_queue(card.regs, RECEIVEQ, &card.rx) || !virtio_queue(card.regs, TRANSMITQ, &card.tx))
            continue;
        for (int b = 0; b < ETH_ALEN; b++)
            card.mac[b] = ((volatile uint8_t *)card.regs)[VIRTIO_MMIO_CONFIG + b];
        virtio_driver_ok(card.regs);
        present = 1;
        kprintf("virtio-net: eth0 ");
        print_mac(card.mac);
        kprintf("\n");
    }
}

/* Send one frame, then take frames until one of ETH_P_LAB arrives (the host's stack may
 * send the new link a frame of its own first: IPv6 neighbour discovery). */
void virtio_net_hello(void)
{
    if (!present) {
        kprintf("net: no card\n");
        return;
    }
    post(&card.rx, RECEIVEQ, &card.rx_buf, sizeof(card.rx_buf), 1); /* before the answer comes */

    struct packet *p = &card.tx_buf;
    uint32_t len = sizeof(p->hdr) + ETH_HLEN + sizeof(HELLO) - 1;
    /* >>> 29: the frame to send in p: a zeroed virtio_net_hdr (no offload asked for,
     * ... 5.1.6.2), then the Ethernet header: to the broadcast address ff:ff:ff:ff:ff:ff,
     * ... from the card's MAC, of type ETH_P_LAB in network byte order; then HELLO */
    memset(&p->hdr, 0, sizeof(p->hdr));
    memset(p->eth.dst, 0xff, ETH_ALEN);
    memcpy(p->eth.src, card.mac, ETH_ALEN);
    p->eth.type = htons(ETH_P_LAB);
    memcpy(p->eth.payload, HELLO, sizeof(HELLO) - 1);
    /* <<< */
    post(&card.tx, TRANSMITQ, p, len, 0);
    if (wait_used(&card.tx) < 0) {
        kprintf("net: the device never gave the frame back\n");
        return;
    }
    kprintf("net: sent %u bytes\n", (uint64_t)(len - sizeof(p->hdr)));

    for (int frames = 0; frames < MAX_OTHER_FRAMES; frames++) {
        int64_t got = wait_used(&card.rx);
        if (got < 0) {
            kprintf("net: no frame came\n");
            return;
        }
        struct eth_frame *f = &card.rx_buf.eth;
        if (got >= (int64_t)(sizeof(card.rx_buf.hdr) + ETH_HLEN) && got <= (int64_t)sizeof(card.rx_buf) &&
            f->type == htons(ETH_P_LAB)) {
            uint32_t n = got - sizeof(card.rx_buf.hdr) - ETH_HLEN;
            kprintf("net: received %u bytes from ", (uint64_t)n);
            print_mac(f->src);
            kprintf(": \"");
            uart_write((const char *)f->payload, n > 64 ? 64 : n);
            kprintf("\"\n");
            return;
        }
        kprintf("net: skipped a frame of %u bytes, type %x\n", (uint64_t)got, (uint64_t)htons(f->type));
        post(&card.rx, RECEIVEQ, &card.rx_buf, sizeof(card.rx_buf), 1);
    }
    kprintf("net: no frame of type %x among %u\n", (uint64_t)ETH_P_LAB, (uint64_t)MAX_OTHER_FRAMES);
}
