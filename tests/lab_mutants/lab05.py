"""Wrong system calls for lab 5."""

from labmutant import Mutant

_ASM = '__asm__ volatile("syscall" : "=a"(pid) : "a"(39L) : "rcx", "r11", "memory");'

MUTANTS = [
    Mutant(
        "returns 1 without a system call",
        "getpid.c",
        "no getpid system call",
        edits=((_ASM, "pid = 1;"),),
    ),
    Mutant(
        "the number in RDI, not RAX",
        "getpid.c",
        "no getpid system call",
        edits=((_ASM, _ASM.replace('"a"(39L)', '"D"(39L)')),),
    ),
    Mutant(
        "getpid's handler not in the table",
        "syscall.c",
        "-ENOSYS",
        edits=(("    [SYS_getpid] = HANDLER(sys_getpid),\n", ""),),
    ),
    Mutant(
        "getpid under the wrong number",
        "syscall.c",
        "-ENOSYS",
        edits=(("#define SYS_getpid 39", "#define SYS_getpid 20"),),
    ),
]
