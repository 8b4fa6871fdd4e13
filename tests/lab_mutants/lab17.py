"""Wrong walks of lab 17: each reads one part of an entry or an address wrongly."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "ignores the present bit",
        "walk.py",
        "present bit",
        edits=(("        if not entry & PRESENT:\n            return None\n", ""),),
    ),
    Mutant(
        "takes 8 index bits a level, not 9",
        "walk.py",
        "index bits",
        edits=(("8 * ((linear >> shift) & INDEX)", "8 * ((linear >> shift) & 0xFF)"),),
    ),
    Mutant(
        "walks on through a large page, as if PS were not there",
        "walk.py",
        "PS bit",
        edits=(
            (
                "        if shift in (30, 21) and entry & PAGE_SIZE:\n"
                "            if shift == 30 and not gib_pages:\n"
                "                return None\n"
                "            offset = (1 << shift) - 1\n"
                "            return (entry & FRAME & ~offset) | (linear & offset)\n",
                "",
            ),
        ),
    ),
    Mutant(
        "keeps a large page's PAT bit as an address bit",
        "walk.py",
        "PAT set",
        edits=(("(entry & FRAME & ~offset)", "(entry & FRAME)"),),
    ),
    Mutant(
        "follows an entry's bits 63-12, NX and the software bits included",
        "walk.py",
        "4 KiB page",
        edits=(("        table = entry & FRAME\n", "        table = entry & ~0xFFF\n"),),
    ),
]
