"""Reading a layer tar as a stream of members, at the speed the extractor needs.

``tarfile`` parses a header through a dozen Python calls and wraps each member's data
in three file objects: about 100 us a member, half of an import's time on a fast disk
(docs/bench.md). A layer needs less of a tar: the ustar header, its POSIX prefix, pax
extended headers and GNU long names; nothing of sparse files or multi-volume archives,
which are refused. This reader parses each header with a few slices and reads the
stream in large chunks. Every header is checked (checksum, numbers, sizes) and a
damaged or truncated tar is a ``TarError``, never a silent end: unlike ``tarfile``,
a bad header after the first member is an error too.

The formats: POSIX.1-2017 ``pax`` (ustar header, extended headers) and GNU tar's
manual, "Basic Tar Format" (long names, base-256 numbers).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512  # pax "ustar Interchange Format": headers and data in 512-byte blocks
_CHUNK = 1 << 20  # read from the stream this much at a time
_ZERO = bytes(BLOCK)  # pax: two zero blocks end the archive (tar readers stop at one)
_USTAR = b"ustar\x00"  # pax: magic of a POSIX header, whose prefix field extends the name
# pax typeflags ('0' and NUL regular, '7' contiguous read as regular, as GNU tar does).
REG, AREG, CONT = b"0", b"\0", b"7"
LNK, SYM, CHR, BLK, DIR, FIFO = b"1", b"2", b"3", b"4", b"5", b"6"
_PAX, _PAX_GLOBAL, _SOLARIS_PAX = b"x", b"g", b"X"  # pax extended headers
_GNU_LONGNAME, _GNU_LONGLINK = b"L", b"K"  # GNU: the next member's name or link target
_EXTENDED = (_PAX, _PAX_GLOBAL, _SOLARIS_PAX, _GNU_LONGNAME, _GNU_LONGLINK)
_REGULAR = (REG, AREG, CONT)
_KNOWN = (*_REGULAR, LNK, SYM, CHR, BLK, DIR, FIFO)
_LONG_MAX = 1 << 20  # a long name or pax header larger than this is not a layer's


# pax "ustar Interchange Format" header: name, mode, uid, gid, size, mtime, chksum,
# typeflag, linkname, magic, version (skipped), uname, gname, devmajor, devminor
# (skipped: owners go by number, devices are refused), prefix.
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s6s2x32x32x8x8x155s12x")
_NUMBER_FIELDS = ("mode", "uid", "gid", "size", "mtime", "checksum")


class TarError(Exception):
    """A tar that cannot be read: the message says where and why."""


class Member:
    """One member's header, as the extractor needs it (pax's overrides applied)."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname")

    def __init__(self, name: str, type_: bytes, mode: int, uid: int, gid: int, size: int,
                 mtime: float, linkname: str):  # fmt: skip
        self.name, self.type, self.mode, self.uid, self.gid = name, type_, mode, uid, gid
        self.size, self.mtime, self.linkname = size, mtime, linkname

    def isreg(self) -> bool:
        return self.type in _REGULAR


def _number(field: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU's base-256 (first byte 0x80, or 0xff
    for a negative number)."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    if field[0] == 0xFF:
        return int.from_bytes(field[1:], "big") - (1 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not text.isdigit() or b"8" in text or b"9" in text:
        raise TarError(f"invalid header: {what} {text[:16]!r} is not an octal number")
    return int(text, 8)


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _unsigned_sum(block: bytes) -> int:
    """pax "chksum": the header's bytes summed with the field itself as spaces.

    Summed in C by Adler-32, whose first half is 1 + the bytes' sum modulo 65521: exact
    for 256 bytes (at most 65280), so a header is two halves. (``sum`` of 512 bytes
    costs a Python int per byte: a fifth of a small-file import's time.)"""
    view = memoryview(block)
    halves = (zlib.adler32(view[:256]) & 0xFFFF) + (zlib.adler32(view[256:]) & 0xFFFF) - 2
    return halves - sum(block[148:156]) + 8 * 0x20


def _signed_ok(block: bytes) -> bool:
    """pax "chksum" as some old tars summed it: the header's bytes as signed."""
    unsigned = _unsigned_sum(block)
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b >= 0x80)
    return _number(block[148:156], "checksum") == signed


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: "LENGTH KEY=VALUE\\n" each."""
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":  # fmt: skip
        space = data.find(b" ", pos)
        length = data[pos:space]
        if space < 0 or not length.isdigit() or int(length) < space - pos + 3:
            raise TarError("invalid pax header: malformed record")
        end = pos + int(length)
        record = data[space + 1 : end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise TarError("invalid pax header: malformed record")
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def _apply_pax(m: Member, records: dict[str, str]) -> None:
    """pax "Extended Header Keywords" that override the ustar header's fields."""
    if any(k.startswith("GNU.sparse.") for k in records):
        raise TarError("unsupported member type: a GNU sparse file")
    m.name = records.get("path", m.name)
    m.linkname = records.get("linkpath", m.linkname)
    try:
        m.uid = int(records.get("uid", m.uid))
        m.gid = int(records.get("gid", m.gid))
        m.size = int(records.get("size", m.size))
        m.mtime = float(records.get("mtime", m.mtime))
    except ValueError as e:
        raise TarError(f"invalid pax header: {e}") from None
    if m.size < 0:
        raise TarError("invalid header: negative size")


class Reader:
    """The members of the tar stream ``f``, in order; a regular member's data is read
    with ``chunks`` before the next member is asked for (what is left is skipped)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.buf = b""
        self.pos = 0
        self.left = 0  # bytes of the current member's data not yet read
        self.pad = 0  # and of the padding after them

    def _fill(self, n: int) -> None:
        """Make at least ``n`` bytes (or what is left of the stream) readable."""
        parts = [self.buf[self.pos :]]
        have = len(parts[0])
        while have < n:
            data = self.f.read(max(_CHUNK, n - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        self.buf, self.pos = b"".join(parts), 0

    def _take(self, n: int) -> bytes:
        """Exactly the next ``n`` bytes (n at most a chunk or so)."""
        if self.pos + n > len(self.buf):
            self._fill(n)
            if n > len(self.buf):
                raise TarError("unexpected end of data")
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def _skip(self, n: int) -> None:
        while n:
            step = min(n, _CHUNK)
            self._take(step)
            n -= step

    def write_data(self, fd: int) -> None:
        """Write the data of the member just returned to the file ``fd``."""
        size, self.left = self.left, 0
        end = self.pos + size
        if end + self.pad <= len(self.buf):  # all in the buffer: most small files
            data = self.buf[self.pos : end]
            self.pos, self.pad = end + self.pad, 0
            while data:
                data = data[os.write(fd, data) :]
            return
        while size:
            if self.pos >= len(self.buf):
                self._fill(1)
                if not self.buf:
                    raise TarError("unexpected end of data")
            data = self._take(min(size, len(self.buf) - self.pos, _CHUNK))
            size -= len(data)
            while data:
                data = data[os.write(fd, data) :]

    def _long(self, size: int) -> bytes:
        if size > _LONG_MAX:
            raise TarError(f"invalid header: a long name or pax header of {size} bytes")
        data = self._take(size)
        self._skip(-size % BLOCK)
        return data

    def __iter__(self) -> Iterator[Member]:
        globals_: dict[str, str] = {}
        pax: dict[str, str] = {}
        long_name = long_link = None
        first = True
        last = None
        while True:
            if self.left or self.pad:
                self._skip(self.left + self.pad)
                self.left = self.pad = 0
            if self.pos + BLOCK <= len(self.buf):
                block = self.buf[self.pos : self.pos + BLOCK]
                self.pos += BLOCK
            else:
                block = self._block()
            if block is None or block == _ZERO:
                if pax or long_name is not None or long_link is not None:
                    raise TarError("invalid header: an extended header with no member")
                if first and block is None:
                    raise TarError("empty file")
                return
            first = False
            name, *numbers, kind, link, magic, prefix = _HEADER.unpack(block)
            # Members mostly share mode, owner and mtime: each such run parsed once.
            same = numbers[:3], numbers[4]
            if same != last:
                last = same
                try:  # octal text, the common case, in one step
                    mode, uid, gid, size, mtime, checksum = [
                        int(n.partition(b"\0")[0], 8) for n in numbers
                    ]
                except ValueError:
                    mode, uid, gid, size, mtime, checksum = map(_number, numbers, _NUMBER_FIELDS)
            else:
                try:
                    size, checksum = (
                        int(numbers[3].partition(b"\0")[0], 8),
                        int(numbers[5].partition(b"\0")[0], 8),
                    )
                except ValueError:
                    size, checksum = _number(numbers[3], "size"), _number(numbers[5], "checksum")
            if checksum != _unsigned_sum(block) and not _signed_ok(block):
                raise TarError("invalid header: bad checksum")
            if size < 0:
                raise TarError("invalid header: negative size")
            if kind in _EXTENDED:
                data = self._long(size)
                if kind == _GNU_LONGNAME:
                    long_name = _text(data)
                elif kind == _GNU_LONGLINK:
                    long_link = _text(data)
                else:
                    (globals_ if kind == _PAX_GLOBAL else pax).update(_pax_records(data))
                continue
            if kind not in _KNOWN:
                raise TarError(f"unsupported member type {kind!r} (sparse, volume or unknown)")
            name = _text(name) if long_name is None else long_name
            if magic == _USTAR and prefix[0] and long_name is None:
                name = _text(prefix) + "/" + name
            if kind == AREG and name.endswith("/"):  # a V7 tar's directory
                kind = DIR
            if kind == DIR:
                name = name.rstrip("/")
            if long_link is not None:
                link = long_link
            else:
                link = _text(link) if kind in (LNK, SYM) else ""
            member = Member(name, kind, mode & 0o7777, uid, gid, size, mtime, link)
            if globals_ or pax:
                _apply_pax(member, {**globals_, **pax})
            if member.uid < 0 or member.gid < 0:
                raise TarError("invalid header: negative owner")
            pax, long_name, long_link = {}, None, None
            # A regular member's data follows it, in whole blocks; other members have
            # none whatever their size field says (as tarfile and GNU tar read them).
            if member.isreg():
                self.left, self.pad = member.size, -member.size % BLOCK
            yield member

    def _block(self) -> bytes | None:
        """The next header block, or None where the stream ends between members (as
        tarfile reads a tar whose end-of-archive blocks are missing)."""
        if self.pos + BLOCK > len(self.buf):
            self._fill(BLOCK)
            if not self.buf:
                return None
        return self._take(BLOCK)
