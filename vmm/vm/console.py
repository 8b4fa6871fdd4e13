"""The host side of the guest's serial port: the terminal.

Output is buffered per line and written straight to file descriptor 1 (one write(2) a
line rather than a byte). Input is read on a background thread and handed to the UART's
receiver: from a terminal in cbreak mode, or from a pipe or file (``echo | pyvmm boot``,
as QEMU's ``-serial stdio`` takes it: how a restored guest waiting for a line gets one,
docs/state.md). Other kinds of stdin (/dev/null, a socket) are left alone.
"""

from __future__ import annotations

import os
import stat
import termios
import threading
import tty
from collections.abc import Callable


class Console:
    def __init__(self, fd: int = 1):
        self.fd: int | None = fd  # None once the reader has gone
        self._buf = bytearray()
        self._saved_tty = None

    def output(self, data: bytes) -> None:
        self._buf += data
        if b"\n" in data or len(self._buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        # Out of the buffer before the write: Ctrl-C raises KeyboardInterrupt on the main
        # thread (the boot CPU's) right after a call returns, and a line already written
        # but still buffered would be written again by close().
        data, self._buf = self._buf, bytearray()
        if data and self.fd is not None:
            try:
                os.write(self.fd, data)
            except BrokenPipeError:
                # The reader has gone (`pyvmm boot | head -1`): the guest runs on to its
                # own end, its output dropped, as QEMU's and Firecracker's serial ports
                # do; ending here would skip the clean-up of TAPs and published ports.
                self.fd = None

    def start_input(self, receive: Callable[[bytes], None]) -> None:
        """Forward keystrokes (or piped input) to the guest."""
        try:
            mode = os.fstat(0).st_mode
        except OSError:
            return
        if os.isatty(0):
            self._saved_tty = termios.tcgetattr(0)
            tty.setcbreak(0)
        elif not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
            return

        def pump() -> None:
            while True:
                try:
                    data = os.read(0, 64)
                except OSError:
                    return
                if not data:
                    return
                receive(data)

        threading.Thread(target=pump, name="console-input", daemon=True).start()

    def close(self) -> None:
        self.flush()
        if self._saved_tty is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None
