/* A driver for the 16550 UART at COM1, programmed as on real hardware.
 * It polls by default: the kernel only ever writes, and it reads LSR only once per 16
 * bytes, because LSR.THRE set means the whole transmit FIFO is empty (16550A
 * datasheet, LSR bit 5 in FIFO mode), so 16 bytes may follow without looking again,
 * as Linux's 8250 driver does (tx_loadsz). Each byte is one THR write (one VM exit),
 * which is cheaper than taking an interrupt. With interrupts on (intr.c) it sleeps
 * until the transmitter-empty interrupt instead, and takes the receive interrupt for
 * bytes typed on the host. */
#include <stdarg.h>

#include "kernel.h"

#define COM1 0x3f8
#define UART_TX 0  /* transmit holding register (DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1
#define UART_IIR 2 /* in: interrupt identification */
#define UART_DLM 1 /* divisor latch high (DLAB=1) */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LCR_DLAB 0x80
#define UART_LCR_WLEN8 0x03 /* 8 data bits, no parity, 1 stop bit */
#define UART_FCR_ENABLE_FIFO 0x01
#define UART_FCR_CLEAR_RCVR 0x02
#define UART_FCR_CLEAR_XMIT 0x04
#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT2 0x08
#define UART_LSR_THRE 0x20 /* transmit holding register empty */
#define UART_TX_FIFO 16    /* bytes a 16550A's transmit FIFO holds */
#define UART_MSR 6
#define UART_RX 0
#define UART_IER_RDI 0x01  /* receiver data interrupt */
#define UART_IER_THRI 0x02 /* transmitter holding register empty interrupt */
#define UART_IIR_NO_INT 0x01
#define UART_IIR_ID 0x0e
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_RLSI 0x06
#define COM1_IRQ 4 /* ISA IRQ 4: IOAPIC pin 4 */

static volatile int tx_empty = 1; /* set by the THRE interrupt */
/* Bytes written since THRE was last seen; it starts full, so the first byte looks. Not
 * zero, so it lies in .data beside tx_empty: a page of .bss the kernel had not touched
 * yet would cost the first byte a page fault (some 40 us under PVM). */
static int tx_written = UART_TX_FIFO;

#define BAUD_BASE 115200 /* 1.8432 MHz clock / 16 */
#define BAUD 115200

void uart_init(void)
{
    outb(COM1 + UART_IER, 0); /* no interrupts: we poll */
    outb(COM1 + UART_LCR, UART_LCR_DLAB);
    outb(COM1 + UART_DLL, (BAUD_BASE / BAUD) & 0xff);
    outb(COM1 + UART_DLM, (BAUD_BASE / BAUD) >> 8);
    outb(COM1 + UART_LCR, UART_LCR_WLEN8);
    outb(COM1 + UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
    outb(COM1 + UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
}

/* Each interrupt the UART has pending, highest priority first, until IIR says none
 * (datasheet table 4): reading IIR clears THRE's, reading RBR the receiver's. The line
 * is level-triggered, so it stays up until every cause is gone. */
static void uart_irq(int unused)
{
    (void)unused;
    uint8_t iir;
    irq_counts.uart++;
    while (!((iir = inb(COM1 + UART_IIR)) & UART_IIR_NO_INT)) {
        switch (iir & UART_IIR_ID) {
        case UART_IIR_THRI: tx_empty = 1; break;
        case UART_IIR_RDI: inb(COM1 + UART_RX); irq_counts.uart_rx++; break;
        case UART_IIR_RLSI: inb(COM1 + UART_LSR); break;
        default: inb(COM1 + UART_MSR); break;
        }
    }
}

void uart_enable_interrupts(void)
{
    irq_route(COM1_IRQ, 1, uart_irq, 0);
    tx_empty = 0; /* enabling THRI with the transmitter empty interrupts at once */
    outb(COM1 + UART_IER, UART_IER_RDI | UART_IER_THRI);
}

/* noinline: a function of its own, so that gdb can stop in it (docs/labs.md) */
__attribute__((noinline)) static void uart_putc(char c)
{
    if (interrupts_on) {
        while (!tx_empty)
            wait_for_interrupt();
        tx_empty = 0;
    } else if (tx_written >= UART_TX_FIFO) { /* >= : two CPUs racing without the lock (race.c) */
        while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
            ;
        tx_written = 0;
    }
    tx_written++;
    outb(COM1 + UART_TX, (uint8_t)c);
}

void uart_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        uart_putc(s[i]);
}

static void put_number(uint64_t v, unsigned base, int is_signed)
{
    char buf[24];
    int i = 0;
    if (is_signed && (int64_t)v < 0) {
        uart_putc('-');
        v = -v;
    }
    do {
        buf[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (i)
        uart_putc(buf[--i]);
}

/* printf for the kernel: %s %c %d %u %x %p, with an 'l' accepted and ignored (all 64-bit). */
void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            uart_putc(*fmt);
            continue;
        }
        fmt++;
        while (*fmt == 'l')
            fmt++;
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            uart_write(s, strlen(s));
            break;
        }
        case 'c': uart_putc((char)va_arg(ap, int)); break;
        case 'd': put_number(va_arg(ap, int64_t), 10, 1); break;
        case 'u': put_number(va_arg(ap, uint64_t), 10, 0); break;
        case 'p': uart_write("0x", 2); /* fall through */
        case 'x': put_number(va_arg(ap, uint64_t), 16, 0); break;
        case '%': uart_putc('%'); break;
        default: uart_putc('?');
        }
    }
    va_end(ap);
}
