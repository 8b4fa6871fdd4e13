"""Errors a user can act on.

Library code raises ``PyvmmError`` (or a subclass) with a message that stands on its
own; the CLI prints it as one line and exits with its ``exit_code``, never a traceback.
"""

import sys


class PyvmmError(Exception):
    exit_code = 2


# The exit status after Ctrl-C: a process killed by SIGINT, as a shell reports it.
INTERRUPTED_STATUS = 128 + 2


def report(error: PyvmmError | KeyboardInterrupt) -> int:
    """Say what stopped a command as pyvmm's one line on stderr, and return its exit
    status: a ``PyvmmError``'s own, or 130 after Ctrl-C (where click alone would print
    "Aborted!" and exit 1). Every command's ``finally`` blocks have run by then."""
    if isinstance(error, KeyboardInterrupt):
        sys.stderr.write("pyvmm: interrupted\n")
        return INTERRUPTED_STATUS
    sys.stderr.write(f"pyvmm: {error}\n")
    return error.exit_code
