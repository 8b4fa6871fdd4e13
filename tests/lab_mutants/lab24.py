"""Lab 24's wrong solutions: a byte of the bitmap taken for one page, and the bits of each
byte numbered from the top."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "counts each nonzero byte as one page",
        "dirty_rate.py",
        "a page is a bit",
        edits=(
            (
                "        for bit in range(8):\n            if byte >> bit & 1:\n"
                "                pages.append(8 * index + bit)\n",
                "        if byte:\n            pages.append(index)\n",
            ),
        ),
    ),
    Mutant(
        "numbers each byte's bits from the highest",
        "dirty_rate.py",
        "not the bits' numbers",
        edits=(("pages.append(8 * index + bit)", "pages.append(8 * index + 7 - bit)"),),
    ),
]
