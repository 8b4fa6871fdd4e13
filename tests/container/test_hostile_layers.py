"""Hostile layer tars: nothing they hold may change a file outside the layer.

Each test keeps a sentinel tree outside the state root and compares it (modes, owners,
contents, mtimes, links) before and after the import.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from containertest import entry, make_sentinel, one_line_error, snapshot
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vmm.container.image import importer
from vmm.container.linux.fdtree import remove_tree
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


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


# The sentinel as members name it: "@S@" is replaced by its absolute path. Relative
# escapes need ../ up out of layers/sha256/<tmp or digest>/diff and the state root.
_TARGETS = [f"@S@/{p}" for p in ("file", "dir", "link", "dir/inner")] + [
    "../" * k + f"sentinel/{p}" for k in range(1, 7) for p in ("file", "dir")
]
_COMPONENTS = ["a", "b", "c", ".", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..", ".wh..."]
_inside = st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=3).map("/".join)
_outside = st.one_of(st.sampled_from(_TARGETS), st.sampled_from(["..", "a/../..", "/", ".wh."]))
# Mostly inside: a layer is refused at its first name that is not, and the point is
# what the members before it could do.
_names = st.integers(0, 24).flatmap(lambda i: _outside if i == 0 else _inside)
_kinds = [tarfile.REGTYPE, DIR, SYM, LNK] * 8 + [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE]
_members = st.lists(
    st.tuples(
        st.sampled_from(_kinds),
        _names,
        st.one_of(_names, st.sampled_from(_TARGETS)),  # a link's target
        st.sampled_from([0o644, 0o755, 0o000, 0o4755, 0o6777]),
        st.sampled_from([0, 1000, 4242]),
        st.sampled_from([0, 1_000_000, 2**33]),
    ),
    max_size=12,
)


def _hostile_tar(path: Path, members: list[tuple], sentinel: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, target, mode, owner, mtime in members:
            info, data = entry(name.replace("@S@", str(sentinel)), kind, data=b"payload")
            info.linkname = target.replace("@S@", str(sentinel))
            info.mode, info.uid, info.gid, info.mtime = mode, owner, owner, mtime
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


@settings(max_examples=300, deadline=None)
@given(members=_members)
def test_no_tar_changes_anything_outside_its_layer(members):
    with tempfile.TemporaryDirectory(prefix="pyvmm-hostile-") as base:
        base = Path(base)
        sentinel = make_sentinel(base / "sentinel")
        store = Store(base / "root")
        before = snapshot(base / "sentinel")
        _hostile_tar(base / "layer.tar", members, sentinel)
        try:
            importer.import_image(store, base / "layer.tar", "hostile")
            event("imported")
        except PyvmmError as e:
            event(f"refused: {str(e).split(': ', 1)[-1][:40]}")
            assert "\n" not in str(e)
            assert not list(store.layers.glob("*")) and not (store.images / "hostile").exists()
        assert snapshot(base / "sentinel") == before
        assert not list(store.layers.glob(".tmp-*"))
        remove_tree(store.root)
