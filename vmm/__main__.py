"""``python -m vmm`` is ``pyvmm``."""

from vmm.cli.entry import main

main()
