"""Lab 23's wrong solutions: no lock at all, a lock held for all of a CPU's lines, and an
unlock that never serves the next ticket."""

from labmutant import Mutant

_LOCK = "    if (locked)\n        spin_lock(&uart_lock);\n"
_UNLOCK = "    if (locked)\n        spin_unlock(&uart_lock);\n"

MUTANTS = [
    Mutant("never locks", "race.c", "torn", edits=((_LOCK, ""), (_UNLOCK, ""))),
    Mutant(
        "the lock held from a CPU's first line to its last",
        "race.c",
        "one cpu was idle",
        edits=(
            (_LOCK, "    if (locked && line == 1)\n        spin_lock(&uart_lock);\n"),
            (_UNLOCK, "    if (locked && line == RACE_LINES)\n        spin_unlock(&uart_lock);\n"),
        ),
    ),
    Mutant(
        "spin_unlock writes back the ticket it served",
        "spinlock.c",
        "never handed on",
        edits=(("lock->owner + 1, __ATOMIC_RELEASE", "lock->owner, __ATOMIC_RELEASE"),),
    ),
]
