"""Lab 9's wrong solutions: namespaces that look made but leak."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "mounts left shared",  # passes on a host whose / is already private
        "mini_run.py",
        expect="not private",
        edits=(('    mount(None, "/", None, lib.MS_REC | lib.MS_PRIVATE)\n', ""),),
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
