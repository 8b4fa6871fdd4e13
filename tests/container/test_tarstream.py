"""The layer tar reader against tarfile: the same members from tars of every format
tarfile writes, and a clear error (never a silent end) from a damaged one."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from vmm.container.image import tarstream


def _members(formats: int) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Names past ustar's 100 bytes (pax/GNU long names, ustar's prefix), a long link,
    owners past octal's 8 digits, a non-ASCII name, every type a layer may hold."""
    out = []

    def add(name, kind=tarfile.REGTYPE, data=None, **attrs):
        t = tarfile.TarInfo(name)
        t.type, t.mode, t.mtime = kind, 0o4755 if data else 0o755, 1_700_000_000
        if data is not None:
            t.size = len(data)
        for k, v in attrs.items():
            setattr(t, k, v)
        out.append((t, data))

    add("d", tarfile.DIRTYPE)
    add("d/empty", data=b"")
    add("d/big", data=os.urandom(3 * 1024 * 1024 + 7))  # more than one read of the stream
    add("p" * 90 + "/" + "q" * 90, data=b"prefixed")  # ustar: prefix + name
    if formats != tarfile.USTAR_FORMAT:
        add("l" * 150, data=b"long")  # pax path / GNU longname
        add("link", tarfile.SYMTYPE, linkname="t" * 150)  # pax linkpath / GNU longlink
    add("hard", tarfile.LNKTYPE, linkname="d/empty")
    add("fifo", tarfile.FIFOTYPE)
    add("h\u00e9", data=b"utf-8 name")
    if formats != tarfile.USTAR_FORMAT:
        add("owner", data=b"x", uid=3_000_000, gid=2_500_000)  # base-256 or pax
    return out


def _tar(members, fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for t, data in members:
            tar.addfile(t, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _read(data: bytes) -> list[tuple]:
    reader = tarstream.Reader(io.BytesIO(data))
    out = []
    for m in reader:
        content = None
        if m.isreg():
            with open(os.memfd_create("member"), "w+b") as f:
                reader.write_data(f.fileno())
                f.seek(0)
                content = f.read()
        out.append((m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, content))
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_read_as_tarfile_reads_them(fmt):
    members = _members(fmt)
    data = _tar(members, fmt)
    want = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for t in tar:
            content = tar.extractfile(t).read() if t.isreg() else None
            want.append((t.name, t.type, t.mode, t.uid, t.gid, t.size, t.mtime, t.linkname,
                         content))  # fmt: skip
    assert _read(data) == want
    assert [w[0] for w in want] == [t.name for t, _ in members]


def test_pax_global_header_applies_to_every_later_member():
    t = tarfile.TarInfo("a")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "4242"}) as tar:  # fmt: skip
        tar.addfile(t, io.BytesIO(b""))
        tar.addfile(tarfile.TarInfo("b"), io.BytesIO(b""))
    assert [(m.name, m.uid) for m in tarstream.Reader(io.BytesIO(buf.getvalue()))] == [
        ("a", 4242),
        ("b", 4242),
    ]


def _one(**attrs) -> bytearray:
    t = tarfile.TarInfo("f")
    t.size = 1000
    for k, v in attrs.items():
        setattr(t, k, v)
    return bytearray(_tar([(t, b"x" * t.size)], tarfile.GNU_FORMAT))


def _error(data: bytes) -> str:
    with pytest.raises(tarstream.TarError) as e:
        for _ in tarstream.Reader(io.BytesIO(bytes(data))):
            pass
    return str(e.value)


def test_a_damaged_tar_is_an_error_never_a_shorter_layer():
    data = _one()
    assert _error(b"") == "empty file"
    assert _error(data[:300]) == "unexpected end of data"  # inside the header
    assert _error(data[:900]) == "unexpected end of data"  # inside the data
    second = data[:1536] + _one()[:512]  # a second member, its header's name changed
    second[1536] = ord("g")
    assert _error(second) == "invalid header: bad checksum"
    assert "not an octal number" in _error(_reheader(data, 100, b"0000z44\0"))  # mode


def _reheader(data: bytearray, at: int, field: bytes) -> bytearray:
    """``data`` with ``field`` written at ``at`` of its first header, checksum fixed."""
    data = bytearray(data)
    data[at : at + len(field)] = field
    data[148:156] = b"%06o\0 " % (sum(data[:148]) + sum(data[156:512]) + 8 * 0x20)
    return data


def test_sparse_and_unknown_members_are_refused():
    sparse = _one(type=tarfile.GNUTYPE_SPARSE)
    assert "unsupported member type" in _error(sparse)
    pax = tarfile.TarInfo("s")
    pax.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    assert "GNU sparse" in _error(_tar([(pax, b"")], tarfile.PAX_FORMAT))


def test_a_huge_pax_header_is_refused_before_it_is_read():
    data = _reheader(_one(), 156, b"x")  # a pax header...
    data = _reheader(data, 124, b"\x80" + (1 << 40).to_bytes(11, "big"))  # of 1 TiB
    assert "long name or pax header" in _error(data)
