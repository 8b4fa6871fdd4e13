"""The ``pyvmm`` executable: ``pyvmm boot`` goes straight to its parser, the rest to click.

A boot is measured as a whole process, interpreter start-up included (docs/bench.md,
"Start-up budget"), and importing click alone costs several times the interpreter's own
start. So the one hot command does not pass through the click group in ``vmm/cli/group.py``;
everything else (``pyvmm --help``, ``pyvmm --root DIR ...``, the other commands) does,
and a boot reached that way runs the same ``vmm/cli/boot.py``.
"""

from __future__ import annotations

import sys

from vmm.cli.finish import finish


def main() -> None:
    if sys.argv[1:2] == ["boot"]:
        from vmm.cli import boot as boot_cli

        finish(boot_cli.main(sys.argv[2:]))
    from vmm.cli import group as cli

    try:
        cli.main(prog_name="pyvmm")  # click ends with SystemExit, even on success
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            finish(e.code)
        raise
