"""Lab 21's wrong solutions: a register changed that is not the counter's, and a change
made to the manifest in memory only."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "changes RIP, not the register holding n",
        "vm_state.py",
        "register holding n",
        edits=(
            (
                "(name,) = [reg for reg, value in regs.items()",
                'name = "rip"; _ = [reg for reg, value in regs.items()',
            ),
        ),
    ),
    Mutant(
        "edits the manifest but never writes it back",
        "vm_state.py",
        "register holding n",
        edits=(("        json.dump(manifest, f)\n", "        pass\n"),),
    ),
]
