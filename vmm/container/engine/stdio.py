"""A container's stdio as the engine plumbs it: pipes, or a pseudo-terminal (``-t``).

Without ``-t`` the container writes into pipes the engine copies to its own stdout,
its stderr and the container's log. With ``-t`` the container's stdio is the slave of
a pseudo-terminal made by its init in the container's own devpts; the master comes
back over a *console socket* (runtime-spec runtime.md "create", runc's
``--console-socket``): a unix socket the engine listens on, to which the runtime
connects and the init sends the master with SCM_RIGHTS. The engine then does what
Docker's and conmon's attach do:

- the caller's terminal goes raw, so every key (Ctrl-C, Ctrl-D, arrows) reaches the
  container's line discipline, which makes SIGINT of Ctrl-C for the container's
  foreground process, as on any terminal;
- the container's terminal takes the caller's window size, and again on each
  SIGWINCH (TIOCSWINSZ on the master: the kernel signals the container's side);
- ``relay`` copies the caller's stdin to the master and the master to the caller's
  stdout (and the log) until the container's side is closed: a read on the master
  then fails with EIO, which is its end of file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from collections.abc import Callable, Iterator

from vmm.errors import PyvmmError

ACCEPT_TIMEOUT = 30.0  # seconds for the runtime to connect and the init to send


class ConsoleSocket:
    """A listening unix socket in a private directory: its ``path`` goes to the OCI
    core (``console_socket``); ``receive`` returns the master the init sent."""

    def __init__(self) -> None:
        import socket  # (here and below: only a terminal needs them, not every run)
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="pyvmm-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(ACCEPT_TIMEOUT)

    def receive(self) -> int:
        """The pseudo-terminal master, sent by the container's init."""
        import socket

        try:
            conn, _ = self.sock.accept()
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        except OSError as e:  # (a timeout too)
            raise PyvmmError(f"no terminal came from the container: {e}") from None
        if not fds:
            raise PyvmmError("no terminal came from the container")
        return fds[0]

    def close(self) -> None:
        import shutil

        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def copy_window_size(source: int, master: int) -> None:
    """Give the container's terminal ``source``'s size (if ``source`` is a terminal)."""
    import fcntl
    import struct
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def attached_terminal(master: int, stdin: int = 0, stdout: int = 1) -> Iterator[None]:
    """While inside: the caller's terminal (``stdin``) raw, and its window size, now
    and on every SIGWINCH, on the container's (``stdout``'s if stdin is no terminal)."""
    import termios
    import tty

    source = stdin if os.isatty(stdin) else stdout
    copy_window_size(source, master)
    previous_handler = signal.signal(
        signal.SIGWINCH, lambda _sig, _frame: copy_window_size(source, master)
    )
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if saved is not None:
        tty.setraw(stdin)
    try:
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous_handler)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(outputs: dict[int, int | None], log_fd: int | None,
          inputs: dict[int, int] | None = None,
          on_output: Callable[[], None] = lambda: None,
          until: Callable[[], bool] | None = None) -> None:  # fmt: skip
    """Copy each of ``outputs`` (the container's pipes, or its terminal's master) to
    its target (None: only the log) and to ``log_fd``, and each of ``inputs`` (the
    caller's stdin) to its target, until every output reaches its end, or ``until()``
    says the process is gone (then what it wrote is drained: a process it left
    behind may hold its terminal open for ever). The outputs are closed on the way;
    ``on_output`` is called once, at the first output."""
    inputs = dict(inputs or {})
    first = True
    ending = False
    while outputs:
        if until is not None and not ending and until():
            ending, inputs = True, {}
        try:
            waiting = 0 if ending else None if until is None else 0.1
            ready, _, _ = select.select([*outputs, *inputs], [], [], waiting)
        except InterruptedError:  # (PEP 475 retries; a handler may still raise)
            continue
        if ending and not ready:
            for fd in outputs:
                os.close(fd)
            return
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError as e:
                if e.errno != errno.EIO:  # EIO: a terminal's other side is closed
                    raise
                data = b""
            if fd in inputs:
                if not data:
                    del inputs[fd]  # the caller's end of input: the container's goes on
                    continue
                with contextlib.suppress(OSError):
                    _write_all(inputs[fd], data)
                continue
            if not data:
                os.close(fd)
                del outputs[fd]
                continue
            if first:
                on_output()
                first = False
            for out in (outputs[fd], log_fd):
                if out is not None:
                    with contextlib.suppress(OSError):  # our reader went away: keep
                        _write_all(out, data)  # draining, so the container can finish
