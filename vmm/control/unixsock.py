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

SUN_PATH_MAX = 108  # sys/un.h: sun_path's size, its terminating NUL included


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
    """A listening Unix socket at ``path``, mode 0600, after a leftover one is removed.

    The path appears only once the socket listens: it is bound under a temporary name
    beside ``path`` and linked into place after ``listen``, so a client that waits for
    the file and then connects is never refused (bound, not yet listening)."""
    _clear_stale(path, option)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    temporary = os.path.join(os.path.dirname(path), f".{os.getpid()}-{os.urandom(3).hex()}")
    if len(os.fsencode(temporary)) >= SUN_PATH_MAX:  # no room: bound at the path itself
        temporary = path
    old = os.umask(0o177)
    try:
        sock.bind(temporary)
        sock.listen(backlog)
        if temporary != path:
            try:
                os.link(temporary, path)  # EEXIST if another has taken the path meanwhile
            finally:
                os.unlink(temporary)
    except OSError as e:
        sock.close()
        raise SocketPathError(f"{option} {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    return sock
