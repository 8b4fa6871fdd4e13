"""Docker's per-layer progress lines, redrawn in place on a terminal.

One line per layer (its short digest and what is happening to it), all redrawn at
most ten times a second by moving the cursor back up over them; on anything but a
terminal nothing is drawn, so a script's output is only the result.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR = 30


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}MiB"


class Progress:
    """Lines keyed by layer, drawn on ``out`` when it is a terminal."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self.enabled = self.out.isatty()
        self.lines: dict[str, str] = {}
        self.drawn = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def set(self, key: str, text: str, force: bool = True) -> None:
        """Show ``text`` on ``key``'s line (redrawn now unless ``force`` is False and
        the last drawing is under a tenth of a second old)."""
        if not self.enabled:
            return
        with self.lock:
            self.lines[key[:12]] = text
            now = time.monotonic()
            if force or now - self.last >= 0.1:
                self.last = now
                self._draw()

    def bytes(self, key: str, verb: str, done: int, total: int) -> None:
        filled = BAR * done // total if total else BAR
        bar = "=" * max(filled - 1, 0) + (">" if filled < BAR else "=") + " " * (BAR - filled)
        self.set(key, f"{verb} [{bar}] {_mib(done)}/{_mib(total)}", force=done == total)

    def _draw(self) -> None:
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        body = "".join(f"\x1b[2K{k}: {v}\n" for k, v in self.lines.items())
        self.out.write(up + body)
        self.out.flush()
        self.drawn = len(self.lines)
