"""fdtree: walks that never follow a symlink, never leave their filesystem, and stop
when the tree is moved under them."""

from __future__ import annotations

import os
import subprocess

import pytest
from containertest import make_sentinel, snapshot

from vmm.container.linux import fdtree
from vmm.errors import PyvmmError


def test_walk_visits_directories_before_and_after_their_content(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("x")
    os.symlink("/", tmp_path / "a" / "b" / "up")
    with fdtree.opened(tmp_path) as root:
        steps = [("/".join([*e.parents, e.name]), e.fd is not None) for e in fdtree.walk(root)]
    assert steps == [("a", False), ("a/b", False), ("a/b/up", False), ("a/b", True),
                     ("a/f", False), ("a", True)]  # fmt: skip


def test_remove_takes_symlinks_not_what_they_point_to(tmp_path):
    sentinel = make_sentinel(tmp_path / "sentinel")
    before = snapshot(sentinel)
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("file", "dir", "link"):
        os.symlink(sentinel / name, tree / name)
    os.symlink(sentinel, tree / "top")
    fdtree.remove_tree(tree)
    assert not tree.exists() and snapshot(sentinel) == before


def test_a_mount_point_in_the_tree_is_an_error_and_its_content_stays(tmp_path):
    (tmp_path / "tree" / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", tmp_path / "tree" / "mnt"], check=True)
    try:
        (tmp_path / "tree" / "mnt" / "keep").write_text("other filesystem\n")
        with pytest.raises(PyvmmError, match="mount point"):
            fdtree.remove_tree(tmp_path / "tree")
        assert (tmp_path / "tree" / "mnt" / "keep").read_text() == "other filesystem\n"
    finally:
        subprocess.run(["umount", tmp_path / "tree" / "mnt"], check=True)


def test_a_directory_moved_during_the_walk_stops_it(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    with fdtree.opened(tmp_path) as root, pytest.raises(fdtree.TreeChanged):
        for e in fdtree.walk(root):
            if e.name == "c" and e.fd is None:
                os.rename(tmp_path / "a" / "b", tmp_path / "moved")  # the walk is in b


def test_cursor_refuses_a_symlink_on_the_way(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with fdtree.opened(tmp_path) as root:
        cursor = fdtree.Cursor(root)
        try:
            with pytest.raises(OSError) as e:
                cursor.goto(["link", "x"], create=True)
            assert e.value.filename == "link"
            assert not (tmp_path / "real" / "x").exists()
        finally:
            cursor.close()
