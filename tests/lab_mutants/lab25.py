"""Lab 25's wrong solutions: a fresh boot in the other process, and a cold move (snapshot,
kill, restore) that carries the count over but is no live migration."""

from labmutant import Mutant

_MIGRATE = (
    '    destination = pyvmm("boot", "--incoming", f"unix:{incoming}")\n'
    "    wait_for(incoming)\n"
    '    return destination, api.request(source_sock, "migrate", to=f"unix:{incoming}")\n'
)

MUTANTS = [
    Mutant(
        "boots a new counter in the other process",
        "move.py",
        "never went on",
        edits=((_MIGRATE, '    return pyvmm("boot", "--program", guest.COUNTER), {}\n'),),
    ),
    Mutant(
        "snapshot, then restore in the other process (the source is left to be killed)",
        "move.py",
        "ended by itself",
        edits=(
            (
                _MIGRATE,
                '    snap = os.path.join(work, "snap")\n'
                '    api.request(source_sock, "pause")\n'
                '    api.request(source_sock, "snapshot", dir=snap)\n'
                '    return pyvmm("boot", "--restore", snap), {}\n',
            ),
        ),
    ),
]
