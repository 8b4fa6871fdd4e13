"""Lab 10's wrong solutions: a root that only looks changed."""

from labmutant import Mutant

_PIVOT = """    os.makedirs(f"{new_root}/.oldroot", exist_ok=True)
    old = f"{new_root}/.oldroot".encode()
    check(
        lib.syscall(
            lib.SYS_pivot_root, ffi.new("char[]", new_root.encode()), ffi.new("char[]", old)
        ),
        "pivot_root",
    )
    os.chdir("/")
    umount2("/.oldroot", lib.MNT_DETACH)
    os.rmdir("/.oldroot")
"""

MUTANTS = [
    Mutant(
        "chroot instead of pivot_root",  # the host's tree is out of sight, not gone
        "mini_run.py",
        expect="chroot",
        edits=((_PIVOT, '    os.chroot(new_root)\n    os.chdir("/")\n'),),
    ),
    Mutant(
        "the old root left mounted",
        "mini_run.py",
        expect="old root detached",
        edits=(('    umount2("/.oldroot", lib.MNT_DETACH)\n    os.rmdir("/.oldroot")\n', ""),),
    ),
    Mutant(
        "bytes in syscall's variadic part",
        "mini_run.py",
        expect="refused pivot_root's arguments",
        edits=(
            (
                'ffi.new("char[]", new_root.encode()), ffi.new("char[]", old)',
                "new_root.encode(), old",
            ),
        ),
    ),
    Mutant(
        "no fresh /proc",
        "mini_run.py",
        expect="PID 1",
        edits=(
            (
                '    mount("proc", f"{new_root}/proc", "proc", '
                "lib.MS_NOSUID | lib.MS_NODEV | lib.MS_NOEXEC)\n",
                "",
            ),
        ),
    ),
]
