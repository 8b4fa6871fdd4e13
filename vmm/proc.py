"""A process named for good: its pid and its start time, as /proc shows them.

A pid alone may be reused by an unrelated process once the recorded one has died, so
both container lifecycles (the OCI core's ``runtime.py`` and the engine's
``container.py``) record a process as (pid, start time) and ask ``is_alive`` before
they signal or wait on it. Below both of them: it knows nothing of records or state.
"""

from __future__ import annotations

import time


def process_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of ``pid``, or None if it is gone.

    A pid and its start time together name one process for good: a pid alone may be
    reused by an unrelated process after the recorded one died.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])


def is_alive(pid: int | None, start: int | None) -> bool:
    """Whether the process recorded as ``(pid, start)`` still runs."""
    return pid is not None and start is not None and process_start(pid) == start


def wait_dead(pid: int | None, start: int | None, timeout: float) -> bool:
    """Wait until the process ``(pid, start)`` has ended (it need not be a child:
    polled); False if it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
