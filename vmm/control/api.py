"""The control socket of a running VM (``pyvmm boot --api-sock PATH``) and its client.

The protocol is line-delimited JSON over a Unix stream socket (Firecracker's API is
HTTP with JSON bodies on a Unix socket; one JSON object a line is the same idea with
nothing to parse but JSON). A client sends one request a line and reads one response a
line, as many as it likes on one connection:

    -> {"op": "pause"}
    <- {"ok": true, "state": "paused"}
    -> {"op": "snapshot", "dir": "/tmp/snap"}
    <- {"ok": true, "directory": "/tmp/snap", "memory_written": 1642496, ...}
    -> {"op": "bogus"}
    <- {"ok": false, "error": "unknown op 'bogus' (pause, resume, stats, snapshot, migrate)"}

Operations: ``pause``, ``resume``, ``stats``, ``snapshot`` (``dir``: a new directory;
the guest is paused while it is written, and runs on afterwards unless it was paused),
``migrate`` (``to``: ``unix:PATH`` or ``tcp:HOST:PORT``, vmm/control/migration.py). The socket
is made mode 0600 (whoever can connect can read the guest's memory) and removed when
the VM ends. A VM killed with SIGKILL cannot remove it: a socket at the path that refuses
connections is such a leftover and is replaced, as QEMU replaces its QMP socket; one that
answers belongs to a VM still running, and is refused; anything else at the path is
refused too (``unixsock.listen_unix``, also for ``--incoming unix:PATH``).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Callable

from vmm.control.unixsock import listen_unix
from vmm.errors import PyvmmError

MAX_REQUEST = 64 << 10  # bytes in one request line


class ApiError(PyvmmError):
    pass


class ApiServer:
    """Serve ``handle(request) -> response`` on a Unix socket, on a thread of its own."""

    def __init__(self, path: str, handle: Callable[[dict], dict]):
        self.path = path
        self.handle = handle
        self._sock = listen_unix(path, "--api-sock", backlog=4)
        self._ino = os.stat(path).st_ino
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        while line := reader.readline(MAX_REQUEST + 1):
            if len(line) > MAX_REQUEST:
                self._reply(conn, {"ok": False, "error": "request line too long"})
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ValueError("a request is an object with an op")
            except ValueError as e:
                self._reply(conn, {"ok": False, "error": f"bad request: {e}"})
                continue
            try:
                response = {"ok": True, **self.handle(request)}
            except PyvmmError as e:
                response = {"ok": False, "error": str(e), "status": e.exit_code}
            if not self._reply(conn, response):
                return

    @staticmethod
    def _reply(conn: socket.socket, response: dict) -> bool:
        try:
            conn.sendall(json.dumps(response).encode() + b"\n")
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Stop serving and remove the socket (only if it is still ours)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        try:
            st = os.lstat(self.path)
            if stat.S_ISSOCK(st.st_mode) and st.st_ino == self._ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


class Controller:
    """What the API's operations do to one machine, through its pause gate."""

    OPS = ("pause", "resume", "stats", "snapshot", "migrate")

    def __init__(self, machine, gate):
        self.machine = machine
        self.gate = gate
        self.started = time.monotonic()

    def __call__(self, request: dict) -> dict:
        op = request["op"]
        if op not in self.OPS:
            raise ApiError(f"unknown op {op!r} ({', '.join(self.OPS)})")
        return getattr(self, "op_" + op)(request)

    def op_pause(self, request: dict) -> dict:
        self.gate.pause()
        return {"state": "paused"}

    def op_resume(self, request: dict) -> dict:
        self.gate.resume()
        return {"state": "running"}

    def op_stats(self, request: dict) -> dict:
        times = os.times()
        return {
            "state": "paused" if self.gate.paused else "running",
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "cpu_seconds": round(times.user + times.system, 3),
            "vcpus": len(self.machine.vcpus),
            "memory_bytes": self.machine.memory.size,
            "memory_touched_bytes": self.machine.memory.touched_bytes(),
            "disks": len(self.machine.disks),
        }

    def op_snapshot(self, request: dict) -> dict:
        from vmm.control import snapshot

        directory = _text(request, "dir")
        with self.gate.held():
            return snapshot.save(self.machine, directory, self.gate.call)

    def op_migrate(self, request: dict) -> dict:
        from vmm.control import migration

        return migration.send(self.machine, self.gate, _text(request, "to"))


def _text(request: dict, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(f"{request['op']} needs {key!r}, a non-empty string")
    return value


# --- the client ---------------------------------------------------------------------


def request(path: str, op: str, **args) -> dict:
    """Send one request to the VM at ``path`` and return its response's fields.

    A refusal (``ok`` false) raises ``ApiError`` with the server's message and status.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise ApiError(f"cannot connect to {path}: {e.strerror}") from None
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        line = sock.makefile("rb").readline(MAX_REQUEST)
    finally:
        sock.close()
    if not line:
        raise ApiError(f"{path} closed the connection without answering")
    response = json.loads(line)
    if not response.pop("ok", False):
        error = ApiError(response.get("error", "refused"))
        error.exit_code = response.get("status", 1)
        raise error
    return response
