"""An emulated 16550A UART, the PC's COM1 (I/O ports 0x3f8-0x3ff, IRQ 4).

Register names and bits are Linux's (include/uapi/linux/serial_reg.h), which follow the
National Semiconductor PC16550D datasheet. The VMM transmits instantly, so the
transmitter is always empty (THRE and TEMT set) right after a byte is written; a driver
that waits for THRE, as a real one must, never waits long.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

TYPE_CHECKING = False  # as in vmm/vm/bus.py: a boot does not import typing
if TYPE_CHECKING:
    from vmm.devices.serial_state import SerialState

COM1_BASE = 0x3F8
COM1_IRQ = 4
UART_NR_PORTS = 8

# Register offsets (datasheet table 2). DLAB = LCR bit 7 switches 0 and 1 to the divisor.
UART_RX = 0  # in: receive buffer (RBR)
UART_TX = 0  # out: transmit holding (THR)
UART_DLL = 0  # DLAB: divisor latch low
UART_IER = 1  # interrupt enable
UART_DLM = 1  # DLAB: divisor latch high
UART_IIR = 2  # in: interrupt identification
UART_FCR = 2  # out: FIFO control
UART_LCR = 3  # line control
UART_MCR = 4  # modem control
UART_LSR = 5  # line status
UART_MSR = 6  # modem status
UART_SCR = 7  # scratch

UART_IER_RDI = 0x01  # receiver data interrupt
UART_IER_THRI = 0x02  # transmitter holding register empty interrupt
UART_IER_RLSI = 0x04  # receiver line status interrupt
UART_IER_MSI = 0x08  # modem status interrupt

UART_IIR_NO_INT = 0x01  # no interrupt pending
UART_IIR_MSI = 0x00
UART_IIR_THRI = 0x02
UART_IIR_RDI = 0x04
UART_IIR_RLSI = 0x06
UART_IIR_FIFO_ENABLED = 0xC0  # bits 6-7 read 11 when the FIFOs are on

UART_FCR_ENABLE_FIFO = 0x01
UART_FCR_CLEAR_RCVR = 0x02
UART_FCR_CLEAR_XMIT = 0x04

UART_LCR_DLAB = 0x80

UART_MCR_DTR = 0x01
UART_MCR_RTS = 0x02
UART_MCR_OUT1 = 0x04
UART_MCR_OUT2 = 0x08
UART_MCR_LOOP = 0x10

UART_LSR_DR = 0x01  # receiver data ready
UART_LSR_OE = 0x02  # overrun error
UART_LSR_THRE = 0x20  # transmit holding register empty
UART_LSR_TEMT = 0x40  # transmitter empty

UART_MSR_DCTS = 0x01
UART_MSR_DDSR = 0x02
UART_MSR_TERI = 0x04
UART_MSR_DDCD = 0x08
UART_MSR_CTS = 0x10
UART_MSR_DSR = 0x20
UART_MSR_RI = 0x40
UART_MSR_DCD = 0x80

# The 16550A's receive FIFO holds 16 bytes; Linux's autodetection checks for it. A byte
# arriving at a full FIFO is lost and sets LSR.OE, as on the chip.
UART_FIFO_SIZE = 16
# Divisor for 115200 baud from the 1.8432 MHz clock; what the chip holds after reset is
# undefined, and 12 (9600 baud) is what most BIOSes leave.
UART_RESET_DIVISOR = 12


class Serial:
    """A 16550A with output to a callable and input pushed in by ``receive``.

    ``interrupt(level)`` drives the IRQ line; it is optional because a polling driver
    (like the tiny guest's) needs none.

    Host input is flow-controlled, as a terminal program would want: ``receive`` (on the
    console thread) queues bytes, and they enter the receiver only as fast as the guest
    reads them, so a paste is not lost to overruns (LSR.OE still happens in loopback).
    LSR's data-ready bit is derived from the receive FIFO, so the vCPU's register
    accesses, the hot path, take no lock.
    """

    def __init__(
        self,
        output: Callable[[bytes], None],
        interrupt: Callable[[bool], None] | None = None,
    ):
        self.output = output
        self.interrupt = interrupt
        self._lock = threading.Lock()  # the IRQ line and host input come from two threads
        self.rx: deque[int] = deque()
        self.host_input: deque[int] = deque()  # typed, not yet in the receiver
        self.overrun = False
        self.divisor = UART_RESET_DIVISOR
        self.ier = 0
        self.lcr = 0x03  # 8 data bits, no parity, 1 stop bit
        self.mcr = UART_MCR_OUT2
        self.msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS
        self.scr = 0
        self.fifo_enabled = False
        self.thr_interrupt = False  # THRE interrupt pending until IIR is read or THR written
        self._irq_level = False

    # --- guest side -----------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        value = self._read_register(offset)
        if self.interrupt is not None:
            self._update_interrupt()
        return bytes((value,)) + b"\0" * (size - 1)

    def write(self, offset: int, data: bytes) -> None:
        self._write_register(offset, data[0])
        if self.interrupt is not None:
            self._update_interrupt()

    @property
    def lsr(self) -> int:
        """Transmitter always empty (we send at once); data ready while the FIFO holds any."""
        return (
            UART_LSR_THRE
            | UART_LSR_TEMT
            | (UART_LSR_DR if self.rx else 0)
            | (UART_LSR_OE if self.overrun else 0)
        )

    def _dlab(self) -> bool:
        return bool(self.lcr & UART_LCR_DLAB)

    def _read_register(self, offset: int) -> int:
        if offset == UART_RX:
            if self._dlab():
                return self.divisor & 0xFF
            return self._pop_rx()
        if offset == UART_IER:
            return self.divisor >> 8 if self._dlab() else self.ier
        if offset == UART_IIR:
            iir = self._pending_interrupt()
            if iir == UART_IIR_THRI:
                self.thr_interrupt = False  # reading IIR clears a THRE interrupt (table 4)
            return iir | (UART_IIR_FIFO_ENABLED if self.fifo_enabled else 0)
        if offset == UART_LCR:
            return self.lcr
        if offset == UART_MCR:
            return self.mcr
        if offset == UART_LSR:
            lsr = self.lsr
            self.overrun = False  # error bits clear when LSR is read
            return lsr
        if offset == UART_MSR:
            msr = self._modem_status()
            self.msr &= ~(UART_MSR_DCTS | UART_MSR_DDSR | UART_MSR_TERI | UART_MSR_DDCD)
            return msr
        return self.scr

    def _write_register(self, offset: int, value: int) -> None:
        if offset == UART_TX:
            if self._dlab():
                self.divisor = (self.divisor & 0xFF00) | value
            elif self.mcr & UART_MCR_LOOP:
                self._push_rx(value)  # loopback: the byte comes straight back in
                self.thr_interrupt = True
            else:
                self.output(bytes((value,)))
                self.thr_interrupt = True
        elif offset == UART_IER:
            if self._dlab():
                self.divisor = (self.divisor & 0xFF) | (value << 8)
            else:
                # Enabling THRI with THR empty raises the interrupt at once (8250 behaviour).
                if value & UART_IER_THRI and not self.ier & UART_IER_THRI:
                    self.thr_interrupt = True
                self.ier = value & 0x0F
        elif offset == UART_FCR:
            self.fifo_enabled = bool(value & UART_FCR_ENABLE_FIFO)
            if value & UART_FCR_CLEAR_RCVR or not self.fifo_enabled:
                self.rx.clear()
            if self.host_input:  # the receiver's room changed
                self._take_host_input()
        elif offset == UART_LCR:
            self.lcr = value
        elif offset == UART_MCR:
            self.mcr = value & 0x1F
        elif offset == UART_SCR:
            self.scr = value
        # LSR and MSR are read-only; writes to them are ignored.

    def _modem_status(self) -> int:
        if self.mcr & UART_MCR_LOOP:
            # In loopback the modem inputs are wired to the modem outputs (datasheet 8.6).
            m = self.mcr
            return (
                (UART_MSR_CTS if m & UART_MCR_RTS else 0)
                | (UART_MSR_DSR if m & UART_MCR_DTR else 0)
                | (UART_MSR_RI if m & UART_MCR_OUT1 else 0)
                | (UART_MSR_DCD if m & UART_MCR_OUT2 else 0)
            )
        return self.msr

    def _pending_interrupt(self) -> int:
        """The highest-priority pending interrupt, as IIR reports it (datasheet table 4)."""
        if self.ier & UART_IER_RLSI and self.lsr & UART_LSR_OE:
            return UART_IIR_RLSI
        if self.ier & UART_IER_RDI and self.lsr & UART_LSR_DR:
            return UART_IIR_RDI
        if self.ier & UART_IER_THRI and self.thr_interrupt:
            return UART_IIR_THRI
        if self.ier & UART_IER_MSI and self.msr & 0x0F:
            return UART_IIR_MSI
        return UART_IIR_NO_INT

    def _update_interrupt(self) -> None:
        # The IRQ line reaches the PIC only when OUT2 is set, as on a PC.
        with self._lock:
            level = self._pending_interrupt() != UART_IIR_NO_INT and bool(self.mcr & UART_MCR_OUT2)
            if level != self._irq_level:
                self._irq_level = level
                self.interrupt(level)

    def _pop_rx(self) -> int:
        value = self.rx.popleft() if self.rx else 0
        if self.host_input:
            self._take_host_input()
        return value

    def _rx_capacity(self) -> int:
        return UART_FIFO_SIZE if self.fifo_enabled else 1  # the 16450's holding register

    def _take_host_input(self) -> None:
        with self._lock:
            while self.host_input and len(self.rx) < self._rx_capacity():
                self.rx.append(self.host_input.popleft())

    def _push_rx(self, value: int) -> None:
        if len(self.rx) >= self._rx_capacity():
            self.overrun = True
            return
        self.rx.append(value)

    # --- snapshots ----------------------------------------------------------------

    def save(self) -> SerialState:
        from vmm.devices.serial_state import SerialState  # only a snapshot needs it

        with self._lock:
            return SerialState(
                self.divisor, self.ier, self.lcr, self.mcr, self.msr, self.scr,
                self.fifo_enabled, self.thr_interrupt, self.overrun, self._irq_level,
                list(self.rx),
            )  # fmt: skip

    def restore(self, state: SerialState) -> None:
        """Registers from a snapshot, each checked against its width: the file is untrusted."""
        registers = (state.ier, state.lcr, state.mcr, state.msr, state.scr)
        if not 0 <= state.divisor <= 0xFFFF or any(not 0 <= r <= 0xFF for r in registers):
            raise ValueError("a UART register is out of range")
        if len(state.rx) > UART_FIFO_SIZE or any(not 0 <= b <= 0xFF for b in state.rx):
            raise ValueError(f"the UART's receive FIFO holds more than {UART_FIFO_SIZE} bytes")
        with self._lock:
            self.divisor, self.ier, self.lcr = state.divisor, state.ier & 0x0F, state.lcr
            self.mcr, self.msr, self.scr = state.mcr & 0x1F, state.msr, state.scr
            self.fifo_enabled, self.thr_interrupt = state.fifo_enabled, state.thr_interrupt
            self.overrun, self._irq_level = state.overrun, state.irq_level
            self.rx = deque(state.rx)

    # --- host side ------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes typed on the host's terminal, queued for the receiver."""
        self.host_input.extend(data)
        self._take_host_input()
        if self.interrupt is not None:
            self._update_interrupt()
