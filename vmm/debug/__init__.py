"""Observers on the exit loop: ``--trace`` and the failure report (``trace.py``),
``--stats``, ``--profile``, and the gdb stub (``gdb/``). They read KVM state and guest
memory and know nothing of the machine that hangs them on its loop.
"""
