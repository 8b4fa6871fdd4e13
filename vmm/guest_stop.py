"""The guest-stop signal: how anything below the machine ends a run with a status.

A device cannot stop the machine itself (it knows nothing of vCPUs), nor can an
observer on the exit loop (the halt watch, the gdb stub): each raises ``GuestStop``,
and the machine's exit loop (``Machine.run_vcpu``) catches it and ends the run with its
status. It belongs to the machine, not to any one device, so it lives on its own below
all of them.
"""

from __future__ import annotations


class GuestStop(Exception):
    """The guest asked to stop (or was stopped); ``status`` becomes pyvmm's exit status."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason
