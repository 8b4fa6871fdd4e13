"""The framing of gdb's remote serial protocol (gdb manual, appendix E "Remote Protocol").

A packet is ``$payload#cs``: ``cs`` two hex digits, the payload's byte sum modulo 256.
Inside a payload ``}`` escapes the next byte (XOR 0x20), so binary data (``X``) can
carry ``$``, ``#`` and ``}``. Each packet is acknowledged with ``+`` (or ``-``, resend)
until both sides agree to stop (``QStartNoAckMode``). A lone 0x03 byte, outside any
packet, is gdb's Ctrl-C.
"""

from __future__ import annotations

from typing import NamedTuple

INTERRUPT = 0x03
ESCAPE = 0x7D  # '}'
_SPECIAL = frozenset(b"$#}*")


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def frame(payload: bytes) -> bytes:
    """The packet for ``payload``, with the bytes gdb treats specially escaped."""
    escaped = bytearray()
    for b in payload:
        if b in _SPECIAL:
            escaped += bytes((ESCAPE, b ^ 0x20))
        else:
            escaped.append(b)
    return b"$" + bytes(escaped) + b"#%02x" % checksum(escaped)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        out.append(next(it, 0) ^ 0x20 if b == ESCAPE else b)
    return bytes(out)


class Event(NamedTuple):
    """What arrived: ``packet`` (payload unescaped), ``interrupt``, ``ack``, ``nak``, or
    ``bad`` (a packet that failed its checksum, was too long or was cut short)."""

    kind: str
    payload: bytes = b""


class PacketReader:
    """Turns the bytes gdb sends, in whatever pieces they arrive, into events.

    A payload longer than ``max_payload`` is read to its end and reported as ``bad``:
    the stub answers it with an error instead of buffering without limit.
    """

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self._body: bytearray | None = None  # inside a packet: its payload so far
        self._too_long = False
        self._checksum: bytearray | None = None  # after '#': the digits so far

    def feed(self, data: bytes) -> list[Event]:
        events = []
        for b in data:
            if self._checksum is not None:
                self._checksum.append(b)
                if len(self._checksum) == 2:
                    events.append(self._finish())
            elif self._body is not None:
                if b == ord("#"):
                    self._checksum = bytearray()
                elif b == ord("$"):  # a new packet before the end of this one
                    events.append(Event("bad", b"packet cut short"))
                    self._start()
                elif len(self._body) >= self.max_payload + 1:  # +1: a '}' escape pair
                    self._too_long = True
                else:
                    self._body.append(b)
            elif b == ord("$"):
                self._start()
            elif b == INTERRUPT:
                events.append(Event("interrupt"))
            elif b == ord("+"):
                events.append(Event("ack"))
            elif b == ord("-"):
                events.append(Event("nak"))
            # anything else between packets is line noise, ignored as gdbserver does
        return events

    def _start(self) -> None:
        self._body, self._too_long, self._checksum = bytearray(), False, None

    def _finish(self) -> Event:
        body, digits, too_long = bytes(self._body), bytes(self._checksum), self._too_long
        self._body = self._checksum = None
        if too_long:
            return Event("bad", b"packet too long")
        try:
            if int(digits, 16) != checksum(body):
                return Event("bad", b"bad checksum")
        except ValueError:
            return Event("bad", b"bad checksum")
        payload = unescape(body)
        if len(payload) > self.max_payload:
            return Event("bad", b"packet too long")
        return Event("packet", payload)
