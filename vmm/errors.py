"""Errors a user can act on.

Library code raises ``PyvmmError`` (or a subclass) with a message that stands on its
own; the CLI prints it as one line and exits with its ``exit_code``, never a traceback.
"""


class PyvmmError(Exception):
    exit_code = 2


# The exit status after Ctrl-C: a process killed by SIGINT, as a shell reports it.
INTERRUPTED_STATUS = 128 + 2
