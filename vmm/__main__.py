"""``python -m vmm`` is ``pyvmm``."""

from vmm.entry import main

main()
