"""The 16550A UART's state in a snapshot (docs/state.md), beside the device.

A record of its own module because a record is a dataclass, and importing
``dataclasses`` imports ``inspect`` (with ``ast``, ``dis``, ``tokenize``): most of a
``python -c pass`` again, paid by every ``pyvmm boot`` if the UART's module held it
(docs/bench.md, "Start-up budget"). Only ``Serial.save`` and the snapshot import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SerialState:
    """The UART as the guest left it, for a snapshot (docs/state.md): the registers, the
    receive FIFO and the pending THRE interrupt. Bytes typed on the host and not yet in
    the receiver are the host terminal's, not the guest's, and are not kept."""

    divisor: int
    ier: int
    lcr: int
    mcr: int
    msr: int
    scr: int
    fifo_enabled: bool
    thr_interrupt: bool
    overrun: bool
    irq_level: bool
    rx: list[int]
