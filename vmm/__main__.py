"""``python -m vmm`` is ``pyvmm``."""

from vmm.cli import main

main(prog_name="pyvmm")
