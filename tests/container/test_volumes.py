"""Named volumes and bind mounts: where data lives outside the container."""

from __future__ import annotations

import json

import pytest
from containertest import one_line_error


def test_named_volume_data_survives_container_rm(pyvmm):
    pyvmm.ok("container", "run", "--rm", "-v", "keepme:/data", "busybox", "sh", "-c",
             "echo saved > /data/f")  # fmt: skip
    out = pyvmm.ok("container", "run", "--rm", "-v", "keepme:/data", "busybox", "cat", "/data/f")
    assert out == "saved\n"
    assert "keepme" in pyvmm.ok("volume", "ls")
    pyvmm.ok("volume", "rm", "keepme")


def test_new_volume_is_filled_with_the_image_content_at_its_path(pyvmm):
    out = pyvmm.ok("container", "run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/group")
    assert out.startswith("root:")
    info = json.loads(pyvmm.ok("volume", "inspect", "etcvol"))
    with open(f"{info['mountpoint']}/group") as f:
        assert f.read() == out
    pyvmm.ok("volume", "rm", "etcvol")


def test_emptied_volume_is_not_filled_again(pyvmm):
    pyvmm.ok("container", "run", "--rm", "-v", "once:/etc", "busybox", "sh", "-c", "rm /etc/*")
    out = pyvmm.ok("container", "run", "--rm", "-v", "once:/etc", "busybox", "ls", "/etc")
    assert out == ""
    pyvmm.ok("volume", "rm", "once")


def test_read_only_volume_and_bind_refuse_writes(pyvmm, tmp_path):
    for spec in ("rovol:/data:ro", f"{tmp_path}:/data:ro"):
        r = pyvmm("container", "run", "--rm", "-v", spec, "busybox", "touch", "/data/x")
        assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert not (tmp_path / "x").exists()
    pyvmm.ok("volume", "rm", "rovol")


def test_bind_mount_shows_host_files_and_writes_through(pyvmm, tmp_path):
    (tmp_path / "in.txt").write_text("from host\n")
    script = "cat /host/in.txt; echo from container > /host/out.txt"
    out = pyvmm.ok(
        "container", "run", "--rm", "-v", f"{tmp_path}:/host", "busybox", "sh", "-c", script
    )
    assert out == "from host\n"
    assert (tmp_path / "out.txt").read_text() == "from container\n"


def test_missing_bind_source_is_refused_and_creates_nothing(pyvmm, tmp_path):
    r = pyvmm("container", "run", "--rm", "-v", f"{tmp_path}/nope:/x", "busybox", "true")
    assert r.returncode == 2 and "does not exist" in one_line_error(r)
    assert not (tmp_path / "nope").exists()


def test_volume_rm_is_refused_while_a_container_refers_to_it(pyvmm):
    pyvmm.ok("volume", "create", "busy")
    pyvmm.ok("container", "run", "--name", "holder", "-v", "busy:/b", "busybox", "true")
    r = pyvmm("volume", "rm", "busy")
    assert r.returncode == 2 and "in use" in one_line_error(r)
    pyvmm.ok("container", "rm", "holder")
    pyvmm.ok("volume", "rm", "busy")
    assert "busy" not in pyvmm.ok("volume", "ls")


def test_bad_volume_names_and_specs_are_refused(pyvmm):
    for spec in ("../x:/d", "a:relative", "v:/d:rx", "v:/"):
        r = pyvmm("container", "run", "--rm", "-v", spec, "busybox", "true")
        assert r.returncode == 2, spec
        one_line_error(r)


@pytest.mark.parametrize("target", ["/proc", "/sys", "/proc/sys", "/proc/1", "/sys/."])
def test_a_bind_over_proc_or_sys_is_refused_in_one_line_and_leaves_nothing(pyvmm, tmp_path, target):
    before = sorted(pyvmm.root.rglob("*"))
    r = pyvmm("container", "run", "-v", f"{tmp_path}:{target}", "busybox", "true")
    assert r.returncode == 2
    line = one_line_error(r)
    assert "/proc" in line or "/sys" in line
    assert sorted(pyvmm.root.rglob("*")) == before
    assert not list(tmp_path.iterdir())
