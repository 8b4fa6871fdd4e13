"""Wrong CMOS clocks for lab 3."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "binary, not BCD",
        "cmos.py",
        "in BCD is",
        edits=(("    return (value // 10) << 4 | value % 10\n", "    return value\n"),),
    ),
    Mutant(
        "local time, not UTC",
        "cmos.py",
        "UTC",
        edits=(("now = time.gmtime()", "now = time.localtime()"),),
    ),
    Mutant(
        "keeps the NMI-mask bit in the register number",
        "cmos.py",
        "NMI mask",
        edits=(("self.index = data[0] & 0x7F", "self.index = data[0]"),),
    ),
    Mutant(
        "hours and seconds swapped",
        "cmos.py",
        "registers 4, 2, 0 read",
        edits=(("= 0x00, 0x02, 0x04", "= 0x04, 0x02, 0x00"),),
    ),
]
