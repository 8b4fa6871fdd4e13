"""Images and layers: importing every supported format, whiteouts, and hostile tars."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from containertest import entry, image_config, oci_layout, one_line_error, tar_bytes

from vmm.container.image import images
from vmm.container.store.state import Store

DIR, SYM, LNK, CHR = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE


def _layers(root: Path) -> set[str]:
    return {p.name for p in (root / "layers" / "sha256").iterdir()}


def _image_ref(pyvmm, ref: str) -> dict:
    return json.loads(pyvmm.ok("image", "inspect", ref))


def test_directory_tar_and_gzip_tar_of_one_tree_are_one_layer(pyvmm, tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hello\n")
    pyvmm.ok("image", "import", tree, "fromdir")
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as tar:
        tar.add(tree / "etc", arcname="etc")
    pyvmm.ok("image", "import", tmp_path / "t.tar.gz", "fromgz")
    a, b = _image_ref(pyvmm, "fromdir"), _image_ref(pyvmm, "fromgz")
    assert len(a["layers"]) == len(b["layers"]) == 1
    layer = pyvmm.root / "layers" / "sha256" / a["layers"][0]["digest"][7:] / "diff"
    assert (layer / "etc" / "motd").read_text() == "hello\n"
    pyvmm.ok("image", "rm", "fromdir", "fromgz")


def test_image_ls_counts_a_shared_layer_once_in_the_total(pyvmm):
    out = pyvmm.ok("image", "ls")
    busybox = _image_ref(pyvmm, "busybox")
    workload = _image_ref(pyvmm, "workload")
    assert workload["layers"][0] == busybox["layers"][0]  # the base layer is shared
    found = [r for _, r in images.list_images(Store(pyvmm.root))]
    total = images.total_size(Store(pyvmm.root), found)
    assert total < sum(images.size(Store(pyvmm.root), r) for r in found)
    assert "shared layers counted once" in out


def _busybox_tar(pyvmm) -> bytes:
    layer = _image_ref(pyvmm, "busybox")["layers"][0]["digest"][7:]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(pyvmm.root / "layers" / "sha256" / layer / "diff", arcname=".")
    return buf.getvalue()


def test_oci_layout_tar_with_gzip_layers_runs_its_default_command(pyvmm, tmp_path):
    layers = [_busybox_tar(pyvmm), tar_bytes([entry("hello.txt", data=b"from the top layer\n")])]
    oci_layout(tmp_path / "oci", layers, image_config(layers, Cmd=["cat", "/hello.txt"]))
    with tarfile.open(tmp_path / "oci.tar", "w") as tar:
        tar.add(tmp_path / "oci", arcname=".")
    pyvmm.ok("image", "import", tmp_path / "oci.tar", "ocitest:v1")
    assert pyvmm.ok("container", "run", "--rm", "ocitest:v1") == "from the top layer\n"
    pyvmm.ok("image", "rm", "ocitest:v1")


def test_docker_save_tar_with_legacy_manifest_imports_layers_in_order(pyvmm, tmp_path):
    save = tmp_path / "save"
    layers = [_busybox_tar(pyvmm), tar_bytes([entry("v", data=b"2\n")])]
    for i, data in enumerate(layers):
        (save / f"l{i}").mkdir(parents=True)
        (save / f"l{i}" / "layer.tar").write_bytes(data)
    (save / "cfg.json").write_text(json.dumps(image_config(layers, Cmd=["cat", "/v"])))
    manifest = [
        {"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["l0/layer.tar", "l1/layer.tar"]}
    ]
    (save / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(tmp_path / "save.tar", "w") as tar:
        tar.add(save, arcname=".")
    pyvmm.ok("image", "import", tmp_path / "save.tar", "saved")
    assert pyvmm.ok("container", "run", "--rm", "saved") == "2\n"
    pyvmm.ok("image", "rm", "saved")


def test_whiteouts_hide_lower_files_and_opaque_dirs_hide_lower_content(pyvmm, tmp_path):
    top = tar_bytes([
        entry("etc/.wh.passwd", data=b""),
        entry("var/.wh..wh..opq", data=b""),
        entry("var/new", data=b"n\n"),
    ])  # fmt: skip
    base = tar_bytes([entry("var/old", data=b"o\n"), entry("etc/group", data=b"g\n")])
    layers = [_busybox_tar(pyvmm), base, top]
    oci_layout(tmp_path / "oci", layers, image_config(layers, Cmd=["sh"]))
    pyvmm.ok("image", "import", tmp_path / "oci", "wh")
    out = pyvmm.ok("container", "run", "--rm", "wh", "sh", "-c", "ls /etc /var")
    assert "passwd" not in out and "group" in out
    assert "new" in out and "old" not in out
    pyvmm.ok("image", "rm", "wh")


# Named for this session: a file of that name outside the store is this test's doing.
ESCAPE = f"escape-{os.getpid()}-{os.urandom(3).hex()}"
BAD_LAYERS = {
    "dotdot": [entry(f"../{ESCAPE}", data=b"x")],
    "absolute": [entry(f"/etc/{ESCAPE}", data=b"x")],
    "symlinked-parent": [entry("d", SYM, linkname="/tmp"), entry(f"d/{ESCAPE}", data=b"x")],
    "hardlink-outside": [entry("h", LNK, linkname="../../etc/passwd")],
    "hardlink-missing": [entry("h", LNK, linkname="etc/shadow")],
    "bare-whiteout": [entry("dir/.wh.", data=b"")],
    "dotdot-whiteout": [entry("ok/.wh...", data=b"")],
    "device-node": [entry("dev/sda", CHR, devmajor=8, devminor=0)],
}


@pytest.mark.parametrize("case", sorted(BAD_LAYERS))
def test_unsafe_layer_tar_is_refused_and_leaves_nothing(pyvmm, tmp_path, case):
    layers_before = _layers(pyvmm.root)
    members = [entry("ok", DIR), entry("ok/file", data=b"fine"), *BAD_LAYERS[case]]
    r = pyvmm.import_tar(members, f"bad-{case}", tmp_path)
    assert r.returncode == 2
    one_line_error(r)
    assert _layers(pyvmm.root) == layers_before
    assert not (pyvmm.root / "images" / f"bad-{case}").exists()
    assert not os.path.exists(f"/tmp/{ESCAPE}") and not os.path.exists(f"/etc/{ESCAPE}")


def test_failed_multi_layer_import_removes_the_layers_it_added(pyvmm, tmp_path):
    good = tar_bytes([entry("fresh", data=os.urandom(16))])
    bad = tar_bytes(BAD_LAYERS["dotdot"])
    oci_layout(tmp_path / "oci", [good, bad], image_config([good, bad], Cmd=["sh"]))
    layers_before = _layers(pyvmm.root)
    r = pyvmm("image", "import", tmp_path / "oci", "halfbad")
    assert r.returncode == 2 and "leaves the layer" in one_line_error(r)
    assert _layers(pyvmm.root) == layers_before


def test_unknown_image_is_a_one_line_error(pyvmm):
    r = pyvmm("container", "run", "--rm", "no-such-image", "true")
    assert r.returncode == 2
    assert "no such image" in one_line_error(r)


def _unique_image(pyvmm, tmp_path: Path, ref: str) -> str:
    """Import busybox's tree plus a marker as ``ref``: a layer no other image has."""
    tree = tmp_path / ref
    busybox = _image_ref(pyvmm, "busybox")["layers"][0]["digest"][7:]
    shutil.copytree(pyvmm.root / "layers" / "sha256" / busybox / "diff", tree, symlinks=True)
    (tree / "marker").write_text(f"{ref}\n")
    pyvmm.ok("image", "import", tree, ref)
    return _image_ref(pyvmm, ref)["layers"][0]["digest"][7:]


def test_image_rm_is_refused_while_a_container_uses_it(pyvmm, tmp_path):
    layer = _unique_image(pyvmm, tmp_path, "inuse")
    pyvmm.ok("container", "run", "--name", "user", "inuse", "true")
    r = pyvmm("image", "rm", "inuse")
    assert r.returncode == 2 and "used by container" in one_line_error(r)
    pyvmm.ok("container", "rm", "user")
    pyvmm.ok("image", "rm", "inuse")
    assert layer not in _layers(pyvmm.root)  # no other image uses it


def test_image_rm_force_never_while_it_runs_and_keeps_the_layers_containers_mount(pyvmm, tmp_path):
    layer = _unique_image(pyvmm, tmp_path, "forced")
    pyvmm.ok("container", "run", "-d", "--name", "runs", "forced", "sleep", "100")
    try:
        r = pyvmm("image", "rm", "-f", "forced")
        assert r.returncode == 2 and "used by running container(s) runs" in one_line_error(r)
        pyvmm.ok("container", "rm", "-f", "runs")
        pyvmm.ok("container", "run", "--name", "stopped", "forced", "true")
        pyvmm.ok("image", "rm", "-f", "forced")  # Docker's rmi -f: the image goes...
        assert "forced" not in pyvmm.ok("image", "ls")
        assert layer in _layers(pyvmm.root)  # ...the layer the container mounts stays
        assert pyvmm.ok("container", "start", "-a", "stopped") == ""
    finally:
        for name in ("runs", "stopped"):
            pyvmm("container", "rm", "-f", name)
    _unique_image(pyvmm, tmp_path, "next")
    pyvmm.ok("image", "rm", "next")  # the next removal collects what nothing uses
    assert layer not in _layers(pyvmm.root)


def test_image_rm_keeps_every_layer_while_a_container_record_is_broken(pyvmm, tmp_path):
    """A broken record says nothing of the layers its container mounts: image rm is
    refused in one line, and -f removes the image but no layer."""
    layer = _unique_image(pyvmm, tmp_path, "hurtimg")
    pyvmm.ok("container", "run", "--name", "hurt", "hurtimg", "true")
    cid = os.readlink(pyvmm.root / "names" / "hurt")
    try:
        state = pyvmm.root / "containers" / cid / "container.json"
        state.write_bytes(state.read_bytes()[:40])
        r = pyvmm("image", "rm", "hurtimg")
        line = one_line_error(r)
        assert r.returncode == 2 and f"may be being used by container {cid[:12]}" in line
        assert "record is broken (container.json is not JSON" in line
        assert "hurtimg" in pyvmm.ok("image", "ls") and layer in _layers(pyvmm.root)
        pyvmm.ok("image", "rm", "-f", "hurtimg")
        assert "hurtimg" not in pyvmm.ok("image", "ls")
        assert layer in _layers(pyvmm.root)
        upper = pyvmm.root / "containers" / cid / "upper"
        assert upper.is_dir()  # nothing of the container's went either
    finally:
        pyvmm.ok("container", "rm", "-f", cid)
    _unique_image(pyvmm, tmp_path, "after")
    pyvmm.ok("image", "rm", "after")
    assert layer not in _layers(pyvmm.root)


@pytest.mark.parametrize("ref", ["", "..", "a/b", "x" * 65, "ok:..", ":tag", "ok:a/b"])
def test_bad_image_reference_is_refused(pyvmm, tmp_path, ref):
    r = pyvmm("image", "import", tmp_path, ref)
    assert r.returncode == 2
    one_line_error(r)
    assert not (pyvmm.root / "images" / ref.partition(":")[0]).is_file()


def test_source_that_is_not_an_image_is_a_one_line_error(pyvmm, tmp_path):
    (tmp_path / "notes.txt").write_text("not a tar\n")
    for source in (tmp_path / "notes.txt", tmp_path / "missing"):
        r = pyvmm("image", "import", source, "junk")
        assert r.returncode == 2
        one_line_error(r)
    assert "junk" not in pyvmm.ok("image", "ls")


def test_unpacked_files_keep_every_owner_mode_and_time_whatever_creation_gave(tmp_path):
    """Modes the umask would cut, set-id bits, another owner, mode 000: each as in the
    tar, however the file was created (unpack sets only what creation did not)."""
    from vmm.container.image import unpack

    cases = {"plain": (0o644, 0, 0), "umasked": (0o666, 0, 0), "setuid": (0o4755, 0, 0),
             "setgid": (0o2711, 0, 0), "none": (0o000, 0, 0), "other": (0o640, 1234, 5678),
             "other-setuid": (0o4755, 1234, 0)}  # fmt: skip
    members = [entry(n, data=n.encode(), mode=m, uid=u, gid=g, mtime=1_600_000_000 + i)
               for i, (n, (m, u, g)) in enumerate(cases.items())]  # fmt: skip
    (tmp_path / "out").mkdir()
    old = os.umask(0o027)
    try:
        unpack.extract(io.BufferedReader(io.BytesIO(tar_bytes(members))), tmp_path / "out")
    finally:
        os.umask(old)
    for i, (name, (mode, uid, gid)) in enumerate(cases.items()):
        st = os.lstat(tmp_path / "out" / name)
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(mode), uid, gid), name
        assert st.st_mtime == 1_600_000_000 + i
        assert (tmp_path / "out" / name).read_bytes() == name.encode()
