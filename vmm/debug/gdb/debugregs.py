"""The x86 debug registers: DR0-DR3 hold addresses, DR7 says what each one watches.

Intel SDM vol. 3, 18.2: DR7 has an enable bit per breakpoint (L0-L3, bits 0, 2, 4, 6),
and per breakpoint a 2-bit condition (R/W, bits 16 + 4n) and a 2-bit length (LEN, bits
18 + 4n). DR6 (18.2.3) reports which one fired in B0-B3 (bits 0-3).
"""

from __future__ import annotations

from collections.abc import Sequence

NR_BREAKPOINTS = 4
# R/W conditions (SDM 18.2.4).
EXECUTE = 0b00
WRITE = 0b01
ACCESS = 0b11  # read or write (reads alone cannot be watched on x86)
# LEN encodings for 1, 2, 8 and 4 bytes (SDM 18.2.4; 8 is 0b10 in 64-bit mode).
_LEN = {1: 0b00, 2: 0b01, 8: 0b10, 4: 0b11}
DR7_GE = 1 << 9  # "exact breakpoint": recommended set whenever data breakpoints are used
DR7_FIXED = 1 << 10  # reads as 1


def debugreg(slots: Sequence[tuple[int, int, int] | None]) -> list[int]:
    """KVM's debugreg[8] (DR0-DR7) for up to four (address, condition, length) slots.

    An instruction breakpoint must have length 1; a data breakpoint covers an aligned
    1, 2, 4 or 8 bytes, which ``split`` ensures.
    """
    regs = [0] * 8
    dr7 = DR7_FIXED
    for n, slot in enumerate(slots):
        if slot is None:
            continue
        addr, condition, length = slot
        regs[n] = addr
        dr7 |= 1 << (2 * n) | condition << (16 + 4 * n) | _LEN[length] << (18 + 4 * n)
        if condition != EXECUTE:
            dr7 |= DR7_GE
    regs[7] = dr7
    return regs


def split(addr: int, length: int) -> list[tuple[int, int]]:
    """Cover [addr, addr + length) with aligned 1/2/4/8-byte pieces, as few as possible."""
    pieces = []
    end = addr + length
    while addr < end:
        size = 8
        while size > 1 and (addr % size or addr + size > end):
            size //= 2
        pieces.append((addr, size))
        addr += size
    return pieces
