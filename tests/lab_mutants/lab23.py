"""Lab 23's wrong solutions: no lock at all, a lock taken and given back before the line,
a lock held for all of a CPU's lines, and an unlock that never serves the next ticket.
The checks watch the lock in guest memory, so none of them needs a line to tear."""

from labmutant import Mutant

_LOCK = "    if (locked)\n        spin_lock(&uart_lock);\n"
_UNLOCK = "    if (locked)\n        spin_unlock(&uart_lock);\n"

MUTANTS = [
    Mutant("never locks", "race.c", "was free", edits=((_LOCK, ""), (_UNLOCK, ""))),
    Mutant(
        "unlocks before printing",
        "race.c",
        "was free",
        edits=((_UNLOCK, ""), (_LOCK, _LOCK + _UNLOCK)),
    ),
    Mutant(
        "the lock held from a CPU's first line to its last",
        "race.c",
        "held for more than one line",
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
