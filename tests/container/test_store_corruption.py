"""The store survives corruption: a record on disk that is missing, truncated, garbage,
ill-typed or names things by ``..`` is listed as broken and removable, and every
command about the other containers, images and volumes works as before; nothing
outside the store is touched."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from containertest import (
    PYVMM,
    Pyvmm,
    entry,
    host_state,
    image_config,
    make_sentinel,
    oci_layout,
    one_line_error,
    pyvmm_processes,
    snapshot,
    tar_bytes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmm.container.image.images import ImageRecord
from vmm.container.store import records

# What a record can be turned into (``_corrupt``).
KINDS = ("missing", "truncated", "empty", "garbage", "not an object", "wrong type", "dotdot")


def _private_root(session_root: Path, top: Path, name: str = "root") -> Path:
    """A state root of its own, ``top/name``, holding the session's busybox image
    (corrupting the session's records would break other tests)."""
    root = top / name if name else top
    (root / "layers" / "sha256").mkdir(parents=True)
    shutil.copytree(session_root / "images" / "busybox", root / "images" / "busybox")
    image = json.loads((root / "images" / "busybox" / "latest.json").read_text())
    for digest in image["layers"]:
        hexdigest = digest.removeprefix("sha256:")
        subprocess.run(["cp", "-a", session_root / "layers" / "sha256" / hexdigest,
                        root / "layers" / "sha256" / hexdigest], check=True)  # fmt: skip
    return root


def _add_image(root: Path, name: str) -> None:
    """Another image record over busybox's layers (what ``image import`` would write)."""
    path = root / "images" / "busybox" / "latest.json"
    image = records.load(path, ImageRecord)
    image.name = name
    (root / "images" / name).mkdir()
    records.write(root / "images" / name / "latest.json", image)


def _corrupt(path: Path, kind: str, outside: Path, cut: int = 7) -> None:
    """Damage the record ``path`` in one of the ways of ``KINDS``; ``dotdot`` points
    every name in it at ``outside``."""
    if kind == "missing":
        path.unlink()
        return
    text = path.read_bytes()
    data = json.loads(text)
    escape = os.path.relpath(outside, path.parent)
    damaged = {
        "truncated": text[: cut % len(text)],
        "empty": b"",
        "garbage": os.urandom(64),
        "not an object": b"[1, 2, 3]",
        "wrong type": json.dumps({k: {"x": [1]} for k in data}).encode(),
        "dotdot": json.dumps(
            {
                **data,
                **{
                    k: [escape] if isinstance(v, list) else escape
                    for k, v in data.items()
                    if k in ("layers", "name", "new_volumes", "id", "digest")
                },
            }  # fmt: skip
        ).encode(),
    }[kind]
    path.write_bytes(damaged)


def _records(root: Path) -> dict[str, Path]:
    """Every record in the store, by what it is the record of."""
    found = {}
    for path in (root / "containers").glob("*/container.json"):
        found[f"container {path.parent.name}"] = path
    for path in (root / "images").glob("*/*.json"):
        found[f"image {path.parent.name}"] = path
    for path in (root / "volumes").glob("*/volume.json"):
        found[f"volume {path.parent.name}"] = path
    for path in (root / "layers" / "sha256").glob("*/layer.json"):
        found[f"layer {path.parent.name}"] = path
    return found


def _leftovers(root: Path) -> list[str]:
    """Files (not directories) left in the store, the lock aside."""
    return sorted(
        str(Path(d, f).relative_to(root))
        for d, _, files in os.walk(root)
        for f in files
        if Path(d, f) != root / "lock"
    )


def _mounts_under(root: Path) -> list[str]:
    """Mount points in the state root (only what this test made: others run too)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(f"{root}/")]


def _ok(r) -> str:
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


def test_a_truncated_container_record_is_listed_broken_and_removed_with_rm_f(pyvmm, tmp_path):
    pyvmm.ok("container", "run", "--name", "fine", "busybox", "true")
    pyvmm.ok("container", "run", "-d", "--name", "hurt", "busybox", "sleep", "100")
    hurt = os.readlink(pyvmm.root / "names" / "hurt")
    state = pyvmm.root / "containers" / hurt / "container.json"
    state.write_bytes(state.read_bytes()[:40])
    merged = pyvmm.root / "containers" / hurt / "merged"
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", merged], check=True)  # one found by hand
    ps = pyvmm.ok("container", "ps", "-a")
    assert f"{hurt[:12]}" in ps and "Broken (container.json is not JSON" in ps
    assert "fine" in ps
    info = pyvmm.inspect("hurt")
    assert info["status"] == "broken" and "not JSON" in info["error"]
    for verb in (["logs"], ["start"], ["stop"], ["rm"]):
        r = pyvmm("container", *verb, "hurt")
        assert r.returncode == 2 and "broken" in one_line_error(r)
    pyvmm.ok("container", "rm", "-f", hurt[:12])  # its cgroup, sleep, mount, files: all gone
    assert not (pyvmm.root / "containers" / hurt).exists()
    assert not (pyvmm.root / "names" / "hurt").exists()
    assert merged.as_posix() not in Path("/proc/self/mountinfo").read_text()
    assert "fine" in pyvmm.ok("container", "ps", "-a")
    pyvmm.ok("container", "rm", "fine")


def test_image_rm_never_follows_layer_names_out_of_the_store(pyvmm, tmp_path):
    victim = make_sentinel(tmp_path / "victim")
    before = snapshot(victim)
    root = _private_root(pyvmm.root, tmp_path)
    _add_image(root, "evil")
    record = root / "images" / "evil" / "latest.json"
    escape = os.path.relpath(victim, root / "layers" / "sha256")  # the issue's ../../../../tmp/v
    record.write_text(json.dumps({**json.loads(record.read_text()), "layers": [escape]}))
    store = Pyvmm(root)
    listing = _ok(store("image", "ls"))
    assert "busybox" in listing and "Broken (latest.json field 'layers'[0]" in listing
    r = store("image", "inspect", "evil")
    assert r.returncode == 2 and "is not a layer digest" in one_line_error(r)
    _ok(store("image", "rm", "evil"))
    assert snapshot(victim) == before
    assert "evil" not in _ok(store("image", "ls"))
    _ok(store("container", "run", "--rm", "busybox", "true"))  # its layer is still there


def test_image_rm_sweeps_what_an_import_killed_mid_write_left_in_any_image_folder(pyvmm, tmp_path):
    """``kill -9`` between a record's temporary file and its rename leaves a folder
    holding only that file (seen once in the crash test): the next ``image rm`` of any
    image removes it, and keeps the other images' records."""
    root = _private_root(pyvmm.root, tmp_path)
    for name in ("crashed", "other", "gone"):
        _add_image(root, name)
    crashed = root / "images" / "crashed"
    os.rename(crashed / "latest.json", crashed / ".latest.json.4242.tmp")
    (root / "images" / "other" / ".v2.json.4243.tmp").write_text("{")
    store = Pyvmm(root)
    _ok(store("image", "rm", "gone"))
    assert not crashed.exists() and not (root / "images" / "gone").exists()
    assert os.listdir(root / "images" / "other") == ["latest.json"]
    assert "other" in _ok(store("image", "ls"))


def test_broken_volume_and_layer_records_leave_the_rest_working(pyvmm, tmp_path):
    root = _private_root(pyvmm.root, tmp_path)
    store = Pyvmm(root)
    for name in ("good", "bad"):
        _ok(store("volume", "create", name))
    (root / "volumes" / "bad" / "volume.json").write_text('{"name": "bad", "crea')
    layer = next((root / "layers" / "sha256").glob("*/layer.json"))
    layer.write_text('{"digest": "sha256:0", "size": -1}')
    listing = _ok(store("volume", "ls"))
    assert "good" in listing and "bad           Broken (volume.json is not JSON" in listing
    assert "not JSON" in json.loads(_ok(store("volume", "inspect", "bad")))["error"]
    r = store("container", "run", "--rm", "-v", "bad:/data", "busybox", "true")
    assert r.returncode == 2 and "volume bad is broken" in one_line_error(r)
    out = _ok(store("container", "run", "--rm", "-v", "good:/data", "busybox", "echo", "hi"))
    assert out == "hi\n"
    assert "?" in _ok(store("image", "ls"))  # busybox's size: unknown
    _ok(store("volume", "rm", "bad", "good"))
    assert not list((root / "volumes").iterdir())


def test_an_image_env_with_a_nul_byte_is_refused_at_import(pyvmm, tmp_path):
    layer = tar_bytes([entry("bin/", tarfile.DIRTYPE)])
    oci_layout(tmp_path / "nul", [layer], image_config([layer], Env=["A=x\u0000y"]))
    r = pyvmm("image", "import", tmp_path / "nul", "nulenv")
    assert r.returncode == 2 and "Env entry 'A=x\\x00y' contains a NUL byte" in one_line_error(r)
    assert "nulenv" not in pyvmm.ok("image", "ls")


@pytest.mark.parametrize("command", [["volume", "ls"], ["image", "ls"], ["container", "ps"]])
def test_a_listing_into_a_closed_pipe_ends_quietly(pyvmm, command):
    """As `ls | head -1` does: killed by SIGPIPE, nothing on stderr."""
    env = {**os.environ, "PYVMM_ROOT": str(pyvmm.root)}
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line is written
    try:
        r = subprocess.run([*PYVMM, *command], stdout=writer, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(writer)
    assert r.returncode == -signal.SIGPIPE and r.stderr == b""


# Eight stores of containers, images and volumes, damaged and then used by every command:
# over a minute, the most of any one test of the not-slow run.
@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    damage=st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(0, 1000)), min_size=1, max_size=3
    ),
    picks=st.lists(st.integers(0, 1000), min_size=3, max_size=3),
)
def test_random_corruption_leaves_every_command_working_for_the_rest(pyvmm, damage, picks):
    """Containers, images, volumes and layers; each command on each of them works (or
    fails in one line about the broken one), and rm -f / image rm / volume rm of
    everything leaves no file, mount, cgroup or process, and nothing outside changed."""
    with tempfile.TemporaryDirectory(dir=pyvmm.root.parent) as top:
        top = Path(top)
        outside = make_sentinel(top / "outside")
        before = snapshot(outside)
        root = _private_root(pyvmm.root, top)
        store = Pyvmm(root)
        try:
            _ok(store("container", "run", "--name", "c1", "-v", "v1:/data", "busybox", "true"))
            _ok(store("container", "run", "-d", "--name", "c2", "busybox", "sleep", "100"))
            _ok(store("volume", "create", "v2"))
            _add_image(root, "img2")
            found = sorted(_records(root).items())
            targets = {found[p % len(found)][1]: d for p, d in zip(picks, damage, strict=False)}
            for path, (kind, cut) in targets.items():
                _corrupt(path, kind, outside, cut)
            _check_everything_works(store, root)
        finally:
            ids = store("container", "ps", "-a", "-q").stdout.split()
            store("container", "rm", "-f", *ids)
        assert snapshot(outside) == before
        assert not _mounts_under(root)
        assert not any(host_state(root, root)[1]), "cgroups left behind"
        assert not pyvmm_processes(root)


def _check_everything_works(store: Pyvmm, root: Path) -> None:
    ps = _ok(store("container", "ps", "-a", "-q")).split()
    assert len(ps) == 2
    _ok(store("image", "ls"))
    _ok(store("volume", "ls"))
    for cid in ps:
        _ok(store("container", "inspect", cid))
    r = store("container", "run", "--rm", "busybox", "true")  # works, or says why not
    assert r.returncode == 0 or re.search(
        r"(image busybox:latest is broken|no such image: busybox:latest)", one_line_error(r)
    )
    _ok(store("container", "rm", "-f", *ps))
    assert _ok(store("container", "ps", "-a", "-q")) == ""
    for path in sorted((root / "images").glob("*/*.json")):
        _ok(store("image", "rm", f"{path.parent.name}:{path.stem}"))
    for name in sorted(os.listdir(root / "volumes")):
        _ok(store("volume", "rm", name))
    assert _leftovers(root) == []


@pytest.fixture
def tiny_root(pyvmm, tmp_path):
    """A private state root on an 8 MiB tmpfs holding busybox; always unmounted."""
    root = tmp_path / "tiny"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tiny", root], check=True)
    store = Pyvmm(root)
    try:
        _private_root(pyvmm.root, root, "")
        yield store
    finally:
        ids = store("container", "ps", "-a", "-q").stdout.split()
        if ids:
            store("container", "rm", "-f", *ids)
        subprocess.run(["umount", root], check=True)


def test_a_container_whose_exit_cannot_be_recorded_is_kept(tiny_root):
    """The container fills the state root's disk and exits: the exit cannot be
    recorded, and the container, writable layer and all, is kept, never removed."""
    store, root = tiny_root, tiny_root.root
    fill = "dd if=/dev/zero of=/fill bs=64k 2>/dev/null; echo filled"
    r = store("container", "run", "--name", "full", "busybox", "sh", "-c", fill)
    assert r.returncode == 125 and r.stdout == "filled\n"
    line = one_line_error(r)
    assert "container full exited with status 0, but its exit could not be recorded" in line
    assert "No space left on device" in line and "it is kept" in line
    cid = os.readlink(root / "names" / "full")
    assert (root / "containers" / cid / "upper" / "fill").stat().st_size > 1 << 20
    ps = _ok(store("container", "ps", "-a"))  # on the full disk still
    assert "full" in ps and "Exited (0)" in ps
    info = store.inspect("full")
    assert info["error"] == "its exit could not be recorded: No space left on device"
    _ok(store("image", "ls"))
    _ok(store("container", "rm", "full"))
    assert not (root / "containers" / cid).exists()
    _ok(store("container", "run", "--rm", "busybox", "true"))  # the space is back


def test_a_full_disk_at_start_leaves_nothing(tiny_root):
    """Refused at create or start, a run leaves nothing behind, even on a full disk."""
    store, root = tiny_root, tiny_root.root
    with open(root / "ballast", "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
    try:
        r = store("container", "run", "--name", "nospace", "busybox", "true")
        assert r.returncode != 0 and "No space left on device" in one_line_error(r)
        assert not list((root / "containers").glob("*"))
        assert not (root / "names" / "nospace").exists()
    finally:
        (root / "ballast").unlink()
