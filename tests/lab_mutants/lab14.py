"""Lab 14's wrong solutions: a user namespace that half works."""

from labmutant import Mutant

_INNER_PID = """        check(lib.unshare(lib.CLONE_NEWPID), "unshare pid")
        pid = os.fork()
        if pid:
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            os._exit(128 - code if code < 0 else code)
"""

MUTANTS = [
    Mutant(
        "no PID namespace of the user namespace's own",  # /proc cannot be mounted
        "mini_run.py",
        expect="PID namespace belongs to the host's user namespace",
        edits=((_INNER_PID, ""),),
    ),
    Mutant(
        "root mapped to the host's root",
        "mini_run.py",
        expect="root inside is not nobody outside",
        edits=(('f"0 {NOBODY} 1"', '"0 0 1"'),),
    ),
    Mutant(
        "never becomes root inside",
        "mini_run.py",
        expect="root inside is not nobody outside",
        edits=(("        os.setgroups([])\n        os.setgid(0)\n        os.setuid(0)\n", ""),),
    ),
]
