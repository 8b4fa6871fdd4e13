"""A listening Unix socket at a path a user names (``--api-sock``, ``--incoming unix:``).

Of its own, below both the control socket (``api.py``) and live migration's destination
(``migration.py``): the API dispatches to migration, so migration taking this from the
API would make the two import each other.
"""

from __future__ import annotations

import os
import socket
import stat

from vmm.errors import PyvmmError


class SocketPathError(PyvmmError):
    pass


def _clear_stale(path: str, option: str) -> None:
    """Remove a socket left at ``path`` by a process that died; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{option} {path}: the path exists already and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # nobody listens: a leftover
        os.unlink(path)
        return
    except OSError as e:
        raise SocketPathError(f"{option} {path}: {e.strerror}") from None
    finally:
        probe.close()
    raise SocketPathError(f"{option} {path}: another process is serving on it")


def listen_unix(path: str, option: str, backlog: int = 1) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600, after a leftover one is removed."""
    _clear_stale(path, option)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise SocketPathError(f"{option} {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    return sock
