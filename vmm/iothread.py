"""An I/O thread: serve queue notifications that KVM delivers through an ioeventfd.

With an ioeventfd registered on a virtqueue's QueueNotify address, the guest's notify
write no longer exits to the VMM: KVM signals the eventfd and the vCPU runs on. This
thread waits on the eventfds and serves each queue while the vCPU keeps running.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable


class IoThread:
    def __init__(self):
        self._handlers: dict[int, Callable[[], None]] = {}
        self._poll = select.poll()
        self._stop = os.eventfd(0, os.EFD_CLOEXEC)
        self._poll.register(self._stop, select.POLLIN)
        self._thread: threading.Thread | None = None

    def watch(self, handler: Callable[[], None]) -> int:
        """A new eventfd whose signals call ``handler`` on this thread; the thread owns it."""
        eventfd = os.eventfd(0, os.EFD_CLOEXEC)
        self._handlers[eventfd] = handler
        self._poll.register(eventfd, select.POLLIN)
        return eventfd

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="io", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            for fd, _ in self._poll.poll():
                if fd == self._stop:
                    return
                os.eventfd_read(fd)  # reset the count: one serve drains the whole queue
                self._handlers[fd]()

    def stop(self) -> None:
        """Stop the thread (if it started), then close every eventfd it watched."""
        if self._thread is not None:
            os.eventfd_write(self._stop, 1)
            self._thread.join()
        for fd in [self._stop, *self._handlers]:
            os.close(fd)
