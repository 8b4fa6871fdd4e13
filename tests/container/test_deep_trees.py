"""Trees 10,000 directories deep, far past PATH_MAX and Python's recursion limit: every
command that walks a tree an image or a container made must still work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from containertest import one_line_error

from vmm.container.linux.fdtree import remove_tree

DEPTH = 10_000
# Tens of thousands of directories made, copied and removed per test: minutes together.
pytestmark = pytest.mark.slow


def make_deep(top: Path, depth: int = DEPTH) -> None:
    """``top/d/d/.../d/bottom``, made with directory fds: the path is too long to name."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        os.symlink("/", "root-link", dir_fd=fd)
    finally:
        os.close(fd)


@pytest.fixture
def pyvmm(pyvmm):
    """A walk of 10,000 directories is some 8 s of CPU here: minutes of wall time when
    the machine is loaded, so each command gets ten of them, not one."""
    pyvmm.timeout = 600.0
    return pyvmm


@pytest.fixture
def tree(tmp_path):
    """``tmp_path/tree``, removed after the test by the project's iterative walk:
    pytest's own clean-up (``shutil.rmtree``) recurses, and a tree this deep would
    break it for every later run that shares the temporary root."""
    path = tmp_path / "tree"
    yield path
    if path.exists():
        remove_tree(path)


def deep_tar(path: Path, depth: int = DEPTH) -> None:
    """A layer tar holding one file ``depth`` directories down, with a member of its own
    for the first and the last directories (the others are implied)."""
    deep = "/".join(["d"] * depth)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("d", deep):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o751
            tar.addfile(info)
        info = tarfile.TarInfo(deep + "/bottom")
        tar.addfile(info)


def deepest(top: Path) -> os.stat_result:
    """The stat of the ``bottom`` file under ``top``, reached with directory fds."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while "d" in os.listdir(fd):
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = sub
        return os.stat("bottom", dir_fd=fd)
    finally:
        os.close(fd)


def _layer(pyvmm, ref: str) -> Path:
    digest = json.loads(pyvmm.ok("image", "inspect", ref))["layers"][-1]["digest"]
    return pyvmm.root / "layers" / "sha256" / digest[7:] / "diff"


def test_deep_layer_tar_imports_and_its_image_is_removed(pyvmm, tmp_path):
    deep_tar(tmp_path / "deep.tar")
    pyvmm.ok("image", "import", tmp_path / "deep.tar", "deep-tar")
    layer = _layer(pyvmm, "deep-tar")
    assert deepest(layer).st_size == 0
    pyvmm.ok("image", "rm", "deep-tar")
    assert not layer.exists()


def test_deep_directory_imports(pyvmm, tree):
    tree.mkdir()
    make_deep(tree)
    pyvmm.ok("image", "import", tree, "deep-dir")
    assert deepest(_layer(pyvmm, "deep-dir")).st_size == 0
    pyvmm.ok("image", "rm", "deep-dir")


def test_stale_deep_temporary_layer_does_not_block_the_next_import(pyvmm, tmp_path):
    stale = pyvmm.root / "layers" / "sha256" / ".tmp-killed-import"
    (stale / "diff").mkdir(parents=True)
    make_deep(stale / "diff")
    deep_tar(tmp_path / "deep.tar", depth=10)
    pyvmm.ok("image", "import", tmp_path / "deep.tar", "after-stale")
    assert not stale.exists()
    pyvmm.ok("image", "rm", "after-stale")


def test_diff_and_rm_of_a_container_with_a_deep_writable_layer(pyvmm):
    pyvmm.ok("container", "run", "--name", "deep", "busybox", "true")
    upper = pyvmm.root / "containers" / pyvmm.inspect("deep")["id"] / "upper"
    make_deep(upper)
    lines = pyvmm.ok("container", "diff", "deep").splitlines()
    assert len(lines) == DEPTH + 2  # each d, bottom and root-link
    assert lines[-1] == "A " + "/d" * DEPTH + "/root-link"
    pyvmm.ok("container", "rm", "deep")
    assert not upper.exists()


def test_volume_rm_of_a_deep_volume(pyvmm):
    pyvmm.ok("volume", "create", "deepvol")
    data = Path(json.loads(pyvmm.ok("volume", "inspect", "deepvol"))["mountpoint"])
    make_deep(data)
    pyvmm.ok("volume", "rm", "deepvol")
    assert not data.parent.exists()


def test_a_dead_rm_container_with_a_deep_layer_does_not_break_ps_inspect_or_rm(pyvmm):
    pyvmm.ok("container", "run", "-d", "--name", "healthy", "busybox", "true")
    pyvmm.ok("container", "run", "-d", "--rm", "--name", "broken", "busybox", "sleep", "30")
    info = pyvmm.inspect("broken")
    make_deep(pyvmm.root / "containers" / info["id"] / "upper")
    os.kill(info["monitor_pid"], signal.SIGKILL)  # ps must now reconcile and remove it
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{info['pid']}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "broken" not in pyvmm.ok("container", "ps", "-a")
    assert not (pyvmm.root / "containers" / info["id"]).exists()
    assert pyvmm.inspect("healthy")["name"] == "healthy"
    r = pyvmm("container", "inspect", "broken")
    assert r.returncode == 2 and "broken" in one_line_error(r)
    pyvmm.ok("container", "rm", "healthy")


def test_a_dead_rm_container_that_cannot_be_removed_does_not_break_ps(pyvmm):
    pyvmm.ok("container", "run", "-d", "--rm", "--name", "stuck", "busybox", "sleep", "30")
    info = pyvmm.inspect("stuck")
    pinned = pyvmm.root / "containers" / info["id"] / "upper" / "pinned"
    pinned.write_text("immutable\n")
    subprocess.run(["chattr", "+i", pinned], check=True)
    try:
        os.kill(info["monitor_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{info['pid']}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "Exited (unknown)" in pyvmm.ok("container", "ps", "-a")
        assert "could not remove" in pyvmm.inspect("stuck")["error"]
        r = pyvmm("container", "rm", "stuck")
        assert r.returncode == 2 and "Operation not permitted" in one_line_error(r)
    finally:
        subprocess.run(["chattr", "-i", pinned], check=True)
    pyvmm.ok("container", "rm", "stuck")


def test_a_volume_is_filled_from_a_deep_image_directory(pyvmm, tree):
    busybox = json.loads(pyvmm.ok("image", "inspect", "busybox"))["layers"][0]["digest"]
    subprocess.run(["cp", "-a", pyvmm.root / "layers" / "sha256" / busybox[7:] / "diff", tree],
                   check=True)  # fmt: skip
    (tree / "deep").mkdir()
    make_deep(tree / "deep")
    pyvmm.ok("image", "import", tree, "deepbox")
    pyvmm.ok("container", "run", "--rm", "-v", "deepfill:/deep", "deepbox", "true", timeout=300)
    data = Path(json.loads(pyvmm.ok("volume", "inspect", "deepfill"))["mountpoint"])
    assert deepest(data).st_size == 0
    pyvmm.ok("volume", "rm", "deepfill")
    pyvmm.ok("image", "rm", "deepbox")
