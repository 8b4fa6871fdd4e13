"""Wrong fault handling for lab 7 (lab 2's run loop, grown)."""

from labmutant import Mutant

_ANSWER = 'exit.data[:] = b"\\xff" * len(exit.data)'
_TRIPLE = 'code: {code}", file=sys.stderr)\n            '
_REPORT = 'print(f"MMIO {kind} {exit.addr:#x} size {len(exit.data)}", file=sys.stderr)'

MUTANTS = [
    Mutant(
        "answers every read with one byte",
        "run_loop.py",
        "all ones",
        edits=((_ANSWER, 'exit.data[:] = b"\\xff"'),),
    ),
    Mutant(
        "answers with zeros",
        "run_loop.py",
        "all ones",
        edits=((_ANSWER, "exit.data[:] = bytes(len(exit.data))"),),
    ),
    Mutant(
        "reports the lab's MMIO read, not the exit's",
        "run_loop.py",
        "MMIO read 0x",
        edits=((_REPORT, 'print("MMIO read 0x100000 size 1", file=sys.stderr)'),),
    ),
    Mutant(
        "a triple fault ends the loop with status 0",
        "run_loop.py",
        "after a triple fault",
        edits=((_TRIPLE + "return 1\n", _TRIPLE + "return 0\n"),),
    ),
]
