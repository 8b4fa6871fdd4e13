"""Paths in a config.json are resolved inside the rootfs, as runc's securejoin does:
``..`` climbs no higher than the rootfs, an absolute symlink starts from it, a loop
is a one-line error. Each case names a host path the mount (or device node) would
land on if the path were joined as a string, and checks that it stayed inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from containertest import Runtime, busybox_rootfs, leaves_nothing

from vmm.container.oci.spec import default


@pytest.fixture
def rt(tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    busybox_rootfs(rootfs)
    with leaves_nothing(Runtime(tmp_path / "state", tmp_path, rootfs)) as runtime:
        yield runtime


@pytest.fixture
def outside():
    """A host path under /tmp that nothing may create: the escape's target."""
    path = Path(f"/tmp/pyvmm-escape-{os.getpid()}-{os.urandom(3).hex()}")
    assert not path.exists()
    yield path
    assert not os.path.lexists(path), f"{path} was created on the host"


def _tmpfs(destination: str) -> list[dict]:
    return [*default()["mounts"], {"destination": destination, "type": "tmpfs",
                                   "source": "tmpfs", "options": ["size=64k"]}]  # fmt: skip


def _mount_points(rt, destination: str) -> list[str]:
    """Run a container with a tmpfs on ``destination``; its mount points, as it sees them."""
    r = rt.run(["cat", "/proc/self/mountinfo"], mounts=_tmpfs(destination))
    assert r.returncode == 0, r.stderr
    return [line.split()[4] for line in r.stdout.splitlines()]


def test_dot_dot_in_a_destination_stops_at_the_rootfs(rt, outside):
    assert f"{outside}/sub" in _mount_points(rt, "/.." * 20 + f"{outside}/sub")
    assert (rt.rootfs / outside.relative_to("/") / "sub").is_dir()


def test_an_absolute_symlink_in_a_destination_starts_from_the_rootfs(rt, outside):
    os.symlink(outside, rt.rootfs / "abs")
    assert f"{outside}/sub" in _mount_points(rt, "/abs/sub")
    assert (rt.rootfs / outside.relative_to("/") / "sub").is_dir()


def test_a_relative_symlink_climbing_out_stops_at_the_rootfs(rt, outside):
    (rt.rootfs / "deep").mkdir()
    os.symlink("../" * 20 + str(outside), rt.rootfs / "deep" / "rel")
    assert f"{outside}/sub" in _mount_points(rt, "/deep/rel/sub")


@pytest.mark.parametrize("links", [{"loop": "/loop"}, {"a": "b", "b": "/a/."}])
def test_a_symlink_loop_in_a_destination_fails_create_in_one_line(rt, links):
    for name, target in links.items():
        os.symlink(target, rt.rootfs / name)
    b = rt.bundle(["true"], mounts=_tmpfs(f"/{next(iter(links))}/sub"))
    r = rt("create", "--bundle", b, "loop")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
    assert "symbolic links" in lines[0] and "/sub" in lines[0]


def test_dot_dot_in_a_device_path_stops_at_the_rootfs(rt, outside):
    device = {"path": "/.." * 20 + f"{outside}/null", "type": "c", "major": 1, "minor": 3}
    r = rt.run(["ls", "-l", f"{outside}/null"], linux__devices=[device])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("c"), r.stdout


def test_a_volume_target_through_an_image_symlink_lands_inside(pyvmm, tmp_path):
    # busybox's /usr/bin is a relative symlink, ../bin: the volume goes to /bin/data.
    (tmp_path / "mine").write_text("through the link\n")
    out = pyvmm.ok("container", "run", "--rm", "-v", f"{tmp_path}:/usr/bin/data", "busybox",
                   "cat", "/bin/data/mine")  # fmt: skip
    assert out == "through the link\n"


def test_the_fd_walk_resolves_as_openat2_does(tmp_path):
    """The walk for kernels without openat2, against the kernel's own answers."""
    from vmm.container.linux import inroot

    top = tmp_path / "root"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_text("")
    links = {"abs": "/a/b", "rel": "a/b/../b", "up": "../../../a", "chain": "abs/../b",
             "loop": "loop", "file": "a/b/f", "dangling": "/nowhere"}  # fmt: skip
    for name, target in links.items():
        os.symlink(target, top / name)
    paths = ["a/b/f", "/../../a/b", "abs/f", "rel", "up/b/f", "chain/f", "loop/x",
             "file/x", "dangling", "abs/../../..", "a/./b//f", ".."]  # fmt: skip
    root = os.open(top, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in paths:
            answers = []
            for resolve in (inroot._openat2, lambda r, p: inroot.walk(r, p)[0]):
                try:
                    fd = resolve(root, path)
                except OSError as e:
                    answers.append(e.errno)
                else:
                    answers.append(os.fstat(fd).st_ino)
                    os.close(fd)
            assert answers[0] == answers[1], path
    finally:
        os.close(root)
