"""Ending a command's process once its work is done, without the interpreter's teardown.

Every command is a whole process, and engines call ``pyvmm-runtime`` on every step of a
container's life (docs/bench.md, "Start-up budget"). After a command has returned, all
that is left of its process is Python's own finalization: atexit handlers (pyvmm
registers none), joining threads, and freeing every imported module's objects one by
one. That teardown costs about 5 ms on this host, half of ``python -c pass``, and the
kernel frees the whole process at ``_exit`` anyway. So a command flushes its output and
calls ``_exit`` itself, unless something still needs the interpreter: a thread that is
not a daemon (Python would wait for it), or output that cannot be flushed (Python then
reports it as it always does).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's flag, without importing typing (milliseconds here)
if TYPE_CHECKING:
    from typing import NoReturn


def finish(status: int | None) -> NoReturn:
    """Exit with ``status`` (None is 0, as for ``sys.exit``) as soon as it is safe to."""
    status = status or 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        end_if_stdout_gone()
        sys.exit(status)
    except (OSError, ValueError):
        sys.exit(status)
    threading = sys.modules.get("threading")
    if threading is not None and any(
        t.is_alive() and not t.daemon and t is not threading.main_thread()
        for t in threading.enumerate()
    ):
        sys.exit(status)
    os._exit(status)


def end_if_stdout_gone() -> None:
    """``pyvmm volume ls | head -1``: if our stdout is a pipe whose reader has gone, end as
    ``ls | head -1`` does, killed by the SIGPIPE that Python ignores: no message, and the
    shell sees 128 + SIGPIPE. Returns if stdout is fine: the broken pipe was another one
    (a socket's). Only for a command whose work is done or undone by then: the signal
    runs no ``finally`` block."""
    import select
    import signal

    poll = select.poll()
    poll.register(1, select.POLLOUT)
    if any(events & select.POLLERR for _, events in poll.poll(0)):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
