"""An I/O thread: serve queue notifications that KVM delivers through an ioeventfd, and
host file descriptors a device waits on (a TAP with frames for the guest).

With an ioeventfd registered on a virtqueue's QueueNotify address, the guest's notify
write no longer exits to the VMM: KVM signals the eventfd and the vCPU runs on. This
thread waits on the eventfds and serves each queue while the vCPU keeps running.

It waits with epoll: a descriptor can be added while the thread waits, and a TAP is
watched edge-triggered, so a device that stops reading it (no receive buffers left)
is not woken again and again by frames it cannot take yet.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable


class IoThread:
    def __init__(self):
        self._handlers: dict[int, Callable[[], None]] = {}
        self._eventfds: set[int] = set()
        self._epoll = select.epoll()
        self._stop = os.eventfd(0, os.EFD_CLOEXEC)
        self._epoll.register(self._stop, select.EPOLLIN)
        self._thread: threading.Thread | None = None

    def watch(self, handler: Callable[[], None]) -> int:
        """A new eventfd whose signals call ``handler`` on this thread; the thread owns it."""
        eventfd = os.eventfd(0, os.EFD_CLOEXEC)
        self._eventfds.add(eventfd)
        self._handlers[eventfd] = handler
        self._epoll.register(eventfd, select.EPOLLIN)
        return eventfd

    def watch_readable(self, fd: int, handler: Callable[[], None]) -> None:
        """Call ``handler`` when ``fd`` (which the caller owns) gets new data to read;
        the handler must read until EAGAIN or until something else will call it again."""
        self._handlers[fd] = handler
        self._epoll.register(fd, select.EPOLLIN | select.EPOLLET)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="io", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._stop:
                    return
                if fd in self._eventfds:
                    os.eventfd_read(fd)  # reset the count: one serve drains the whole queue
                self._handlers[fd]()

    def stop(self) -> None:
        """Stop the thread (if it started), then close every eventfd it made."""
        if self._thread is not None:
            os.eventfd_write(self._stop, 1)
            self._thread.join()
        for fd in [self._stop, *self._eventfds]:
            os.close(fd)
        self._epoll.close()
