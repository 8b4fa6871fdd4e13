"""Hostile layer tars: nothing they hold may change a file outside the layer.

Each test keeps a sentinel tree outside the state root and compares it (modes, owners,
contents, mtimes, links) before and after the import.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

from containertest import entry, one_line_error

DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def make_sentinel(top: Path) -> Path:
    """A small tree standing for host files a hostile layer would like to change."""
    top.mkdir()
    (top / "file").write_text("host file\n")
    (top / "dir").mkdir()
    (top / "dir" / "inner").write_text("inner\n")
    os.symlink("file", top / "link")
    for p in (top / "file", top / "dir" / "inner", top / "dir"):
        os.chmod(p, 0o640 if p.is_file() else 0o750)
        os.utime(p, (1_000_000, 1_000_000))
    return top


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under ``top`` (itself included): type, mode, owner, mtime, content."""
    found, stack = {}, [top]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            content = sorted(os.listdir(path))
            stack.extend(path / name for name in content)
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = path.read_bytes()
        found[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink, content)
    return found


def test_hardlink_to_a_symlink_cannot_change_what_the_symlink_points_to(pyvmm, tmp_path):
    sentinel = make_sentinel(tmp_path / "sentinel")
    before = snapshot(sentinel)
    members = [
        entry("s", SYM, linkname=str(sentinel / "file")),
        entry("h", LNK, linkname="s", mode=0o6777, uid=4242, gid=4242, mtime=0),
    ]
    r = pyvmm.import_tar(members, "hardlink-to-symlink", tmp_path)
    assert snapshot(sentinel) == before
    assert r.returncode == 2 and "hardlink" in one_line_error(r)


def test_directory_replaced_by_a_symlink_cannot_redirect_its_metadata(pyvmm, tmp_path):
    sentinel = make_sentinel(tmp_path / "sentinel")
    before = snapshot(sentinel)
    members = [
        entry("d", DIR, mode=0o6777, uid=4242, gid=4242, mtime=0),
        entry("d", SYM, linkname=str(sentinel / "dir")),
        entry("f", DIR, mode=0o6777, mtime=0),
        entry("f", SYM, linkname=str(sentinel / "file")),
    ]
    r = pyvmm.import_tar(members, "dir-then-symlink", tmp_path)
    assert snapshot(sentinel) == before
    assert r.returncode == 0, r.stderr
    digest = json.loads(pyvmm.ok("image", "inspect", "dir-then-symlink"))["layers"][0]["digest"]
    layer = pyvmm.root / "layers" / "sha256" / digest[7:] / "diff"
    assert os.readlink(layer / "d") == str(sentinel / "dir")  # the later member wins
    pyvmm.ok("image", "rm", "dir-then-symlink")
