"""Wrong tiny-kernel virtio-net drivers for lab 29: each leaves out or gets wrong one step
between a frame in guest memory and the wire."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "the frame posted without the virtio_net_hdr in front",
        "virtio_net.c",
        "virtio_net_hdr",
        edits=(
            (
                "    post(&card.tx, TRANSMITQ, p, len, 0);\n",
                "    post(&card.tx, TRANSMITQ, &p->eth, len - sizeof(p->hdr), 0);\n",
            ),
        ),
    ),
    Mutant(
        "the ethertype stored in the CPU's byte order",
        "virtio_net.c",
        "network byte order",
        edits=(("    p->eth.type = htons(ETH_P_LAB);\n", "    p->eth.type = ETH_P_LAB;\n"),),
    ),
    Mutant(
        "avail.idx moved on but the device never notified",
        "virtio_net.c",
        "notified",
        edits=(("    virtio_wr(card.regs, VIRTIO_MMIO_QUEUE_NOTIFY, index);\n", ""),),
    ),
    Mutant(
        "the receive buffer posted device-readable",
        "virtio_net.c",
        "device-writable",
        edits=(("device_writes ? VIRTQ_DESC_F_WRITE : 0, 0}", "0, 0, 0}"),),
    ),
]
