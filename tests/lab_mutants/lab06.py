"""Wrong used-ring updates for lab 6."""

from labmutant import Mutant

_ELEMENT = '    struct.pack_into("<II", used, slot, head, length)\n'
_INDEX = '    used_idx = (used_idx + 1) & 0xFFFF\n    struct.pack_into("<H", used, 2, used_idx)\n'

MUTANTS = [
    Mutant(
        "publishes idx before the element",
        "used_ring.py",
        "before it is there",
        edits=((_ELEMENT + _INDEX, _INDEX + _ELEMENT),),
    ),
    Mutant(
        "the slot is the index itself, not modulo the queue size",
        "used_ring.py",
        "land in their slots",
        edits=(("slot = 4 + 8 * (used_idx % queue_size)", "slot = 4 + 8 * used_idx"),),
    ),
    Mutant(
        "the index does not wrap at 16 bits",
        "used_ring.py",
        "wraps at 16 bits",
        edits=(("used_idx = (used_idx + 1) & 0xFFFF", "used_idx = used_idx + 1"),),
    ),
]
