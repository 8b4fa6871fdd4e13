"""Lab 3: a device of your own on the port-I/O bus: the PC's CMOS real-time clock.

pyvmm's bus hands a device ``read(offset, size)`` and ``write(offset, data)`` with the
offset from the start of its range; this one sits at ports 0x70-0x71. The guest writes
a register number to 0x70 (the index port) and reads the register from 0x71 (the data
port). Registers 0, 2 and 4 hold the seconds, minutes and hours of the current time,
in BCD (0x59 for 59), as the MC146818 chip that the first PC/AT carried did.
"""

import time

INDEX_PORT = 0  # offset of port 0x70 in the device's range
DATA_PORT = 1  # offset of port 0x71
RTC_SECONDS, RTC_MINUTES, RTC_HOURS = 0x00, 0x02, 0x04


def bcd(value: int) -> int:
    """59 -> 0x59: one decimal digit in each 4 bits."""
    # >>> 3: return the two decimal digits of value, the tens in the high 4 bits
    return (value // 10) << 4 | value % 10
    # <<<


class Cmos:
    def __init__(self):
        self.index = 0  # the register the guest last selected

    def write(self, offset: int, data: bytes) -> None:
        # >>> 3: a write to the index port selects a register (keep its low 7 bits: bit 7 is
        # ... the NMI mask); ignore other writes
        if offset == INDEX_PORT:
            self.index = data[0] & 0x7F
        # <<<

    def read(self, offset: int, size: int) -> bytes:
        # >>> 3: a read of the data port returns the selected register: the UTC time's seconds,
        # ... minutes or hours in BCD (time.gmtime()); 0 for any other register
        if offset != DATA_PORT:
            return b"\xff" * size
        now = time.gmtime()
        fields = {RTC_SECONDS: now.tm_sec, RTC_MINUTES: now.tm_min, RTC_HOURS: now.tm_hour}
        value = bcd(fields[self.index]) if self.index in fields else 0
        return bytes([value]) * size
        # <<<
