"""Wrong ways into long mode for lab 4."""

from labmutant import Mutant

_PAE = "    movl %cr4, %eax\n    orl $CR4_PAE, %eax\n    movl %eax, %cr4\n"
_LME = "    movl $MSR_EFER, %ecx\n    rdmsr\n    orl $EFER_LME, %eax\n    wrmsr\n"
_PG = (
    "    movl %cr0, %eax\n"
    "    orl $CR0_PG, %eax                      /* paging on + LME: long mode is active */\n"
    "    movl %eax, %cr0\n"
)

MUTANTS = [
    Mutant("no CR4.PAE", "realmode.S", "64-bit", edits=((_PAE, ""),)),
    Mutant("no EFER.LME: PAE paging in 32-bit mode", "realmode.S", "64-bit", edits=((_LME, ""),)),
    Mutant(
        "CR0.PG before CR4.PAE (the order matters)",
        "realmode.S",
        "64-bit",
        edits=((_PAE + _LME + _PG, _LME + _PG + _PAE),),
    ),
]
