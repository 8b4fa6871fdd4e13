"""The command lines: ``pyvmm`` (``entry.py``: ``boot`` straight to its parser,
the rest to the click group in ``group.py``), one module per command group, and
``pyvmm-runtime`` (``runtime.py``). They parse and print; nothing below imports them.
"""
