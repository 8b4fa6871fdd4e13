"""Lab 9's wrong solutions: namespaces that look made but leak (into a stand-in host of
the check's own, never the real one)."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "mounts left shared",  # passes on a host whose / is already private
        "mini_run.py",
        expect="not private",
        edits=(('    mount(None, "/", None, lib.MS_REC | lib.MS_PRIVATE)\n', ""),),
    ),
    Mutant(
        "no UTS namespace",  # sethostname renames the (stand-in) host
        "mini_run.py",
        expect="renamed the host",
        edits=(("lib.CLONE_NEWUTS | lib.CLONE_NEWNS", "lib.CLONE_NEWNS"),),
    ),
    Mutant(
        "no IPC namespace",
        "mini_run.py",
        expect="System V IPC",
        edits=(("lib.CLONE_NEWNS | lib.CLONE_NEWIPC", "lib.CLONE_NEWNS"),),
    ),
    Mutant(
        "PID namespace unshared in the child, which stays in the host's",
        "mini_run.py",
        expect="PID 1",
        edits=(
            ('    check(lib.unshare(lib.CLONE_NEWPID), "unshare")\n', ""),
            (
                "lib.CLONE_NEWNS | lib.CLONE_NEWIPC",
                "lib.CLONE_NEWNS | lib.CLONE_NEWIPC | lib.CLONE_NEWPID",
            ),
        ),
    ),
]
