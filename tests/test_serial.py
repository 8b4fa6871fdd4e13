"""The 16550 UART, driven through its registers as a guest driver would."""

from vmm.devices.serial import (
    UART_DLL,
    UART_DLM,
    UART_FCR,
    UART_FCR_CLEAR_RCVR,
    UART_FCR_ENABLE_FIFO,
    UART_FIFO_SIZE,
    UART_IER,
    UART_IER_RDI,
    UART_IER_THRI,
    UART_IIR,
    UART_IIR_NO_INT,
    UART_IIR_RDI,
    UART_IIR_THRI,
    UART_LCR,
    UART_LCR_DLAB,
    UART_LSR,
    UART_LSR_DR,
    UART_LSR_OE,
    UART_LSR_TEMT,
    UART_LSR_THRE,
    UART_MCR,
    UART_MCR_DTR,
    UART_MCR_LOOP,
    UART_MCR_OUT2,
    UART_MCR_RTS,
    UART_MSR,
    UART_MSR_CTS,
    UART_MSR_DCD,
    UART_MSR_DSR,
    UART_RX,
    UART_SCR,
    UART_TX,
    Serial,
)


def make():
    out = bytearray()
    levels = []
    uart = Serial(out.extend, levels.append)
    return uart, out, levels


def rd(uart, reg):
    return uart.read(reg, 1)[0]


def wr(uart, reg, value):
    uart.write(reg, bytes([value]))


def test_thr_write_goes_to_output_and_lsr_thre_stays_set():
    uart, out, _ = make()
    assert rd(uart, UART_LSR) & UART_LSR_THRE
    wr(uart, UART_TX, ord("A"))
    assert bytes(out) == b"A"
    assert rd(uart, UART_LSR) & (UART_LSR_THRE | UART_LSR_TEMT) == UART_LSR_THRE | UART_LSR_TEMT


def test_dlab_switches_offsets_0_and_1_to_the_divisor_latch():
    uart, out, _ = make()
    wr(uart, UART_LCR, UART_LCR_DLAB)
    wr(uart, UART_DLL, 0x01)
    wr(uart, UART_DLM, 0x02)
    assert rd(uart, UART_DLL) == 0x01 and rd(uart, UART_DLM) == 0x02
    assert out == b""  # a divisor write is not a byte sent
    wr(uart, UART_LCR, 0x03)
    assert uart.divisor == 0x0201
    assert rd(uart, UART_IER) == 0  # IER again, not DLM
    assert rd(uart, UART_LCR) == 0x03


def test_scratch_register_keeps_its_value():
    uart, _, _ = make()
    wr(uart, UART_SCR, 0x5A)
    assert rd(uart, UART_SCR) == 0x5A


def test_loopback_returns_written_byte_to_receiver_and_not_to_output():
    uart, out, _ = make()
    wr(uart, UART_MCR, UART_MCR_LOOP)
    wr(uart, UART_TX, 0x42)
    assert out == b""
    assert rd(uart, UART_LSR) & UART_LSR_DR
    assert rd(uart, UART_RX) == 0x42
    assert not rd(uart, UART_LSR) & UART_LSR_DR


def test_loopback_wires_modem_outputs_to_modem_inputs():
    uart, _, _ = make()
    wr(uart, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS)
    assert rd(uart, UART_MSR) & 0xF0 == UART_MSR_CTS
    wr(uart, UART_MCR, UART_MCR_LOOP | UART_MCR_DTR | UART_MCR_OUT2)
    assert rd(uart, UART_MSR) & 0xF0 == UART_MSR_DSR | UART_MSR_DCD


def test_receive_fifo_is_bounded_and_overrun_sets_lsr_oe_once():
    uart, _, _ = make()
    wr(uart, UART_FCR, UART_FCR_ENABLE_FIFO)
    wr(uart, UART_MCR, UART_MCR_LOOP)
    for b in range(UART_FIFO_SIZE + 5):  # the guest outruns its own receiver
        wr(uart, UART_TX, b)
    lsr = rd(uart, UART_LSR)
    assert lsr & UART_LSR_OE and lsr & UART_LSR_DR
    assert not rd(uart, UART_LSR) & UART_LSR_OE  # cleared by the read
    got = []
    while rd(uart, UART_LSR) & UART_LSR_DR:
        got.append(rd(uart, UART_RX))
    assert got == list(range(UART_FIFO_SIZE))


def test_host_input_waits_for_room_and_is_never_lost():
    uart, _, _ = make()
    uart.receive(b"typed faster than a 16450 can hold")  # no FIFO: one byte at a time
    got = bytearray()
    while rd(uart, UART_LSR) & UART_LSR_DR:
        assert not rd(uart, UART_LSR) & UART_LSR_OE
        got.append(rd(uart, UART_RX))
    assert bytes(got) == b"typed faster than a 16450 can hold"


def test_fcr_clear_receiver_empties_the_fifo():
    uart, _, _ = make()
    wr(uart, UART_FCR, UART_FCR_ENABLE_FIFO)
    uart.receive(b"abc")
    wr(uart, UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR)
    assert not rd(uart, UART_LSR) & UART_LSR_DR


def test_iir_reports_fifo_enabled_bits():
    uart, _, _ = make()
    assert rd(uart, UART_IIR) == UART_IIR_NO_INT
    wr(uart, UART_FCR, UART_FCR_ENABLE_FIFO)
    assert rd(uart, UART_IIR) == UART_IIR_NO_INT | 0xC0


def test_received_data_interrupt_raises_irq_line_and_has_priority_over_thre():
    uart, _, levels = make()
    wr(uart, UART_MCR, UART_MCR_OUT2)
    wr(uart, UART_IER, UART_IER_RDI | UART_IER_THRI)
    assert levels == [True]  # THRE is empty, so enabling THRI interrupts at once
    uart.receive(b"x")
    assert rd(uart, UART_IIR) & 0x0F == UART_IIR_RDI
    rd(uart, UART_RX)
    assert rd(uart, UART_IIR) & 0x0F == UART_IIR_THRI
    # Reading IIR with THRE as the source clears it, and the line drops.
    assert rd(uart, UART_IIR) & 0x0F == UART_IIR_NO_INT
    assert levels == [True, False]


def test_irq_line_stays_low_without_out2():
    uart, _, levels = make()
    wr(uart, UART_MCR, 0)
    wr(uart, UART_IER, UART_IER_THRI)
    assert levels == []


def test_msr_reports_carrier_and_clear_to_send_when_not_in_loopback():
    uart, _, _ = make()
    assert rd(uart, UART_MSR) & (UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS) == (
        UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS
    )
