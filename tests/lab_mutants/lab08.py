"""Wrong fork and exec for lab 8 (mini_run.py at level 8)."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "no fork: mini_run execs the command itself",
        "mini_run.py",
        "fork, then exec",
        edits=(
            (
                "    pid = os.fork()\n    if pid == 0:\n",
                '    os.write(go_write, b"g")\n    pid = 0\n    if pid == 0:\n',
            ),
        ),
    ),
    Mutant(
        "a signal's death passed on as a negative status",
        "mini_run.py",
        "128 + N",
        edits=(("    status = 128 - code if code < 0 else code\n", "    status = code\n"),),
    ),
    Mutant(
        "a failed exec lets the child run on as a second mini_run",
        "mini_run.py",
        "127",
        edits=(
            (
                '            print(f"mini_run: {e}", file=sys.stderr)\n        os._exit(127)\n',
                '            print(f"mini_run: {e}", file=sys.stderr)\n',
            ),
        ),
    ),
]
