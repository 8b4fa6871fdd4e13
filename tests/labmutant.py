"""A wrong-but-plausible lab solution: the reference solution with a few edits.

The mutation tests (``test_lab_mutants.py``) write a lab's solution into a folder, apply
one mutant, run the lab's real checks and require that a check fails and says why. A
mutant lives beside the others of its lab in ``tests/lab_mutants/labNN.py`` as
``MUTANTS = [Mutant(...), ...]``; none is shipped in ``labs/``, so a student never sees
one. Edits, not copies: a mutant names the few lines it changes, so it follows the
solution when the solution changes (an edit whose ``old`` text has gone fails loudly).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vmtest import kvm_usable

from vmm.course import labs


@dataclass(frozen=True)
class Mutant:
    """``name`` says what is wrong; ``expect`` is a fragment (case-insensitive) that the
    failing checks' names or messages must contain, naming the missing mechanism."""

    name: str
    file: str  # a solution file, as named in the lab's working folder
    expect: str
    edits: tuple[tuple[str, str], ...] = field(default=())  # (old, new): old occurs once
    text: str | None = None  # the whole file instead, for a solution written anew

    def apply(self, folder: Path) -> None:
        path = folder / self.file
        if self.text is not None:
            path.write_text(self.text)
            return
        source = path.read_text()
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                raise AssertionError(
                    f"mutant {self.name}: {old!r} occurs {count} times in {self.file}, not once"
                )
            source = source.replace(old, new)
        path.write_text(source)


def missing(lab: labs.Lab) -> str | None:
    """Why this machine cannot run ``lab``'s checks, or None."""
    if "kvm" in lab.needs and not kvm_usable():
        return "needs a usable /dev/kvm"
    if {"root", "images"} & set(lab.needs) and os.geteuid() != 0:
        return "needs root"
    return None
