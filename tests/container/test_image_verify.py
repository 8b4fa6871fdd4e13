"""What an import verifies: digests, diff_ids, configs, blob file kinds, and sources.

Each bad case is a real OCI layout or ``docker save`` archive built here and then
corrupted the way a hostile or damaged download would be; the import must fail with
status 2 and one line, and leave the state root exactly as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from containertest import (
    PYVMM,
    blob_file,
    entry,
    image_config,
    oci_blob,
    oci_layout,
    one_line_error,
    tar_bytes,
    tar_of,
)

SYM, LNK = tarfile.SYMTYPE, tarfile.LNKTYPE


def _stored(root: Path) -> set[str]:
    """What the state root holds: its top level, every layer (and temporary layer
    directory) and every image record."""
    return {
        str(p.relative_to(root))
        for pattern in ("*", "layers/sha256/*", "images/*", "images/*/*")
        for p in root.glob(pattern)
    }


def _fresh_layers(n: int = 1) -> list[bytes]:
    """Layers no other test has, so that a failed import would have stored them anew."""
    return [tar_bytes([entry(f"f{i}", data=os.urandom(64))]) for i in range(n)]


def _refused(pyvmm, source: Path, *wanted: str) -> str:
    """Import ``source``: status 2, one line containing ``wanted``, nothing stored."""
    before = _stored(pyvmm.root)
    r = pyvmm("image", "import", source, "hostile")
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    for w in wanted:
        assert w in line
    assert _stored(pyvmm.root) == before
    return line


def _layout(tmp_path: Path, compress: bool = True, **run) -> tuple[Path, dict]:
    layers = _fresh_layers(2)
    path = tmp_path / "oci"
    run = run or {"Cmd": ["sh"]}
    return path, oci_layout(path, layers, image_config(layers, **run), compress=compress)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _flip_last_byte_of_content(path: Path) -> bytes:
    """Change one byte of a plain layer tar's first file, keeping it a valid tar."""
    data = bytearray(path.read_bytes())
    data[512] ^= 0xFF  # the first member's data block
    path.write_bytes(data)
    return bytes(data)


# Happy paths beyond test_images.py's.


def test_docker_save_with_content_addressed_paths_and_a_linked_layer_runs(pyvmm, tmp_path):
    """Docker 25's save (blobs/sha256 paths, a config with null fields), with a layer
    reached through a symlink inside the archive, as older Docker links a repeated one."""
    busybox = json.loads(pyvmm.ok("image", "inspect", "busybox"))["layers"][0]["digest"]
    base = pyvmm.root / "layers" / "sha256" / busybox[7:] / "diff"
    save = tmp_path / "save"
    layers = [
        tar_of(base, tmp_path / "base.tar").read_bytes(),
        tar_bytes([entry("v", data=b"linked\n")]),
    ]
    names = [oci_blob(save, data, "")["digest"].replace(":", "/") for data in layers]
    (save / "old").mkdir()
    (save / "old" / "layer.tar").symlink_to(f"../blobs/{names[1]}")
    config = image_config(layers, Cmd=["cat", "/v"], Entrypoint=None, Labels=None)
    config_name = oci_blob(save, json.dumps(config).encode(), "")["digest"].replace(":", "/")
    manifest = [
        {"Config": f"blobs/{config_name}", "Layers": [f"blobs/{names[0]}", "old/layer.tar"]}
    ]
    (save / "manifest.json").write_text(json.dumps(manifest))
    pyvmm.ok("image", "import", tar_of(save, tmp_path / "save.tar"), "saved25")
    assert pyvmm.ok("container", "run", "--rm", "saved25") == "linked\n"
    pyvmm.ok("image", "rm", "saved25")


def test_nested_index_with_several_platforms_imports_linux_amd64(pyvmm, tmp_path):
    """index.json names an index (as a multi-platform image has), which lists an arm64
    manifest (here: not a manifest at all, so choosing it would fail) before amd64's."""
    path, descs = _layout(tmp_path, Cmd=["echo", "amd64"])
    arm = {**descs["config"], "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    nested = {
        "schemaVersion": 2,
        "manifests": [
            {**arm, "platform": {"os": "linux", "architecture": "arm64"}},
            {**descs["manifest"], "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    desc = oci_blob(path, json.dumps(nested).encode(), "application/vnd.oci.image.index.v1+json")
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    pyvmm.ok("image", "import", path, "multi")
    assert json.loads(pyvmm.ok("image", "inspect", "multi"))["config"]["Cmd"] == ["echo", "amd64"]
    pyvmm.ok("image", "rm", "multi")


# Digests.


def test_layer_blob_whose_bytes_differ_from_its_digest_is_refused(pyvmm, tmp_path):
    path, descs = _layout(tmp_path, compress=False)
    layer = descs["layers"][1]
    actual = _sha(_flip_last_byte_of_content(blob_file(path, layer)))
    line = _refused(pyvmm, path, "digest mismatch", layer["digest"], actual)
    assert f"expected {layer['digest']}, actual {actual}" in line


def test_gzip_layer_blob_whose_bytes_differ_from_its_digest_is_refused(pyvmm, tmp_path):
    """The corrupt gzip fails to unpack; the error says why: not the blob named."""
    path, descs = _layout(tmp_path)
    blob = blob_file(path, descs["layers"][0])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(data)
    _refused(pyvmm, path, "digest mismatch", descs["layers"][0]["digest"], _sha(bytes(data)))


def test_layer_blob_longer_than_its_descriptor_is_cut_off(pyvmm, tmp_path):
    path, descs = _layout(tmp_path, compress=False)
    with open(blob_file(path, descs["layers"][0]), "ab") as f:
        f.write(b"\0" * 4096)
    _refused(pyvmm, path, "longer than the", str(descs["layers"][0]["size"]))


def test_layer_whose_tar_differs_from_the_configs_diff_id_is_refused(pyvmm, tmp_path):
    layers = _fresh_layers(2)
    config = image_config(layers, Cmd=["sh"])
    wrong = _sha(b"another layer")
    config["rootfs"]["diff_ids"][1] = wrong
    descs = oci_layout(tmp_path / "oci", layers, config)
    line = _refused(pyvmm, tmp_path / "oci", "diff_id mismatch", wrong, _sha(layers[1]))
    assert descs["layers"][1]["digest"][7:] in line  # names the blob


def test_config_whose_bytes_differ_from_the_manifests_digest_is_refused(pyvmm, tmp_path):
    path, descs = _layout(tmp_path, Cmd=["aaaa"])
    blob = blob_file(path, descs["config"])
    blob.write_bytes(blob.read_bytes().replace(b"aaaa", b"evil"))
    _refused(pyvmm, path, "config", "digest mismatch", descs["config"]["digest"])


def test_manifest_whose_bytes_differ_from_the_index_digest_is_refused(pyvmm, tmp_path):
    path, descs = _layout(tmp_path)
    blob = blob_file(path, descs["manifest"])
    blob.write_bytes(blob.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion": 3'))
    _refused(pyvmm, path, "manifest", "digest mismatch", descs["manifest"]["digest"])


def test_manifest_shorter_than_the_index_size_is_refused(pyvmm, tmp_path):
    path, descs = _layout(tmp_path)
    index = json.loads((path / "index.json").read_text())
    index["manifests"][0]["size"] += 1
    (path / "index.json").write_text(json.dumps(index))
    _refused(pyvmm, path, "manifest", f"where its descriptor gives {descs['manifest']['size'] + 1}")


@pytest.mark.parametrize(
    "digest, wanted",
    [
        ("sha512:" + "a" * 128, "unsupported digest algorithm 'sha512'"),
        ("sha256:" + "A" * 64, "not a sha256 digest"),
        ("sha256:abc", "not a sha256 digest"),
        ("sha256:../../../etc/passwd", "not a digest"),
        (42, "not a digest"),
    ],
)
def test_bad_digest_in_a_descriptor_is_refused(pyvmm, tmp_path, digest, wanted):
    path, _ = _layout(tmp_path)
    index = json.loads((path / "index.json").read_text())
    index["manifests"][0]["digest"] = digest
    (path / "index.json").write_text(json.dumps(index))
    _refused(pyvmm, path, wanted)


def test_docker_save_layer_that_differs_from_its_diff_id_is_refused(pyvmm, tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    layers = _fresh_layers(2)
    for i, data in enumerate(layers):
        (save / f"l{i}.tar").write_bytes(data)
    config = image_config(layers, Cmd=["sh"])
    (save / "l1.tar").write_bytes(_fresh_layers()[0])
    (save / "cfg.json").write_text(json.dumps(config))
    manifest = [{"Config": "cfg.json", "Layers": ["l0.tar", "l1.tar"]}]
    (save / "manifest.json").write_text(json.dumps(manifest))
    want = config["rootfs"]["diff_ids"][1]
    _refused(pyvmm, tar_of(save, tmp_path / "s.tar"), "l1.tar", "diff_id mismatch", want)


def test_docker_save_legacy_config_named_by_another_digest_is_refused(pyvmm, tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    layers = _fresh_layers()
    (save / "l0.tar").write_bytes(layers[0])
    name = "0" * 64 + ".json"
    (save / name).write_text(json.dumps(image_config(layers, Cmd=["sh"])))
    (save / "manifest.json").write_text(json.dumps([{"Config": name, "Layers": ["l0.tar"]}]))
    _refused(pyvmm, tar_of(save, tmp_path / "s.tar"), name, "digest mismatch")


# Blobs that are not regular files inside the layout.


def test_blob_symlinked_out_of_a_layout_directory_is_refused(pyvmm, tmp_path):
    """The symlink's target holds the very bytes the digest names: it is refused as a
    symlink, not for its content."""
    path, descs = _layout(tmp_path)
    blob = blob_file(path, descs["layers"][0])
    outside = tmp_path / "outside"
    blob.rename(outside)
    blob.symlink_to(outside)
    _refused(pyvmm, path, "symlink", blob.name)


def test_blob_under_a_symlinked_directory_is_refused(pyvmm, tmp_path):
    path, _ = _layout(tmp_path)
    (path / "blobs").rename(tmp_path / "elsewhere")
    (path / "blobs").symlink_to(tmp_path / "elsewhere")
    _refused(pyvmm, path, "symlink")


@pytest.mark.parametrize("relative", [False, True])
def test_blob_symlinked_out_of_a_layout_tar_is_refused(pyvmm, tmp_path, relative):
    path, descs = _layout(tmp_path)
    blob = blob_file(path, descs["layers"][1])
    outside = tmp_path / "outside"
    blob.rename(outside)
    blob.symlink_to(os.path.relpath(outside, blob.parent) if relative else outside)
    _refused(pyvmm, tar_of(path, tmp_path / "oci.tar"), "symlink out of the archive")


def test_docker_save_layer_symlinked_out_of_the_archive_is_refused(pyvmm, tmp_path):
    save = tmp_path / "save"
    (save / "l0").mkdir(parents=True)
    layers = _fresh_layers()
    (tmp_path / "outside.tar").write_bytes(layers[0])
    (save / "l0" / "layer.tar").symlink_to(tmp_path / "outside.tar")
    (save / "cfg.json").write_text(json.dumps(image_config(layers, Cmd=["sh"])))
    (save / "manifest.json").write_text(
        json.dumps([{"Config": "cfg.json", "Layers": ["l0/layer.tar"]}])
    )
    _refused(pyvmm, tar_of(save, tmp_path / "s.tar"), "l0/layer.tar", "symlink out of the archive")


@pytest.mark.parametrize(
    "links, wanted",
    [
        ([("l0.tar", SYM, "l1.tar"), ("l1.tar", SYM, "l0.tar")], "too many levels of symlinks"),
        ([("real.tar", tarfile.REGTYPE, None), ("l0.tar", LNK, "real.tar")], "not a regular file"),
    ],
)
def test_docker_save_layer_member_that_is_a_link_loop_or_a_hard_link_is_refused(
    pyvmm, tmp_path, links, wanted
):
    layers = _fresh_layers()
    members = [
        entry("cfg.json", data=json.dumps(image_config(layers, Cmd=["sh"])).encode()),
        entry(
            "manifest.json",
            data=json.dumps([{"Config": "cfg.json", "Layers": ["l0.tar"]}]).encode(),
        ),
    ]
    for name, kind, target in links:
        members.append(entry(name, kind, layers[0], linkname=target or ""))
    (tmp_path / "s.tar").write_bytes(tar_bytes(members))
    _refused(pyvmm, tmp_path / "s.tar", "l0.tar", wanted)


def test_fifo_blob_in_a_layout_directory_is_refused_without_waiting(pyvmm, tmp_path):
    path, descs = _layout(tmp_path)
    blob = blob_file(path, descs["layers"][0])
    blob.unlink()
    os.mkfifo(blob)
    _refused(pyvmm, path, "FIFO", "not a regular file")


def test_layer_path_leaving_a_docker_save_archive_is_refused(pyvmm, tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    layers = _fresh_layers()
    (save / "cfg.json").write_text(json.dumps(image_config(layers, Cmd=["sh"])))
    (save / "manifest.json").write_text(
        json.dumps([{"Config": "cfg.json", "Layers": ["../x.tar"]}])
    )
    _refused(pyvmm, tar_of(save, tmp_path / "s.tar"), "outside the layout")


# Documents that are not what the specification says.


BAD_CONFIGS = {
    "cmd-string": (dict(config__Cmd="sh -c 'id'"), "'Cmd' must be a JSON array, not a JSON string"),
    "entrypoint-number": (dict(config__Entrypoint=7), "'Entrypoint' must be a JSON array"),
    "env-not-strings": (dict(config__Env=["A=1", 2]), "'Env' must be a list of strings"),
    "env-no-equals": (dict(config__Env=["JUSTNAME"]), "not NAME=value"),
    "workdir-list": (dict(config__WorkingDir=["/"]), "'WorkingDir' must be a JSON string"),
    "user-number": (dict(config__User=0), "'User' must be a JSON string"),
    "labels-int": (dict(config__Labels={"a": 1}), "'Labels' must map names to strings"),
    "ports-list": (dict(config__ExposedPorts=["80/tcp"]), "'ExposedPorts' must be a JSON object"),
    "volumes-strings": (dict(config__Volumes={"/d": "x"}), "'Volumes' must map names to objects"),
    "stopsignal-int": (dict(config__StopSignal=9), "'StopSignal' must be a JSON string"),
    "config-list": (dict(config=[]), "'config' must be a JSON object"),
    "arch-missing": (dict(architecture=None), "'architecture' must be a JSON string"),
    "os-windows": (dict(os="windows"), "not linux"),
    "rootfs-type": (dict(rootfs={"type": "tar", "diff_ids": []}), "rootfs type must be 'layers'"),
    "diff-id-sha512": (
        dict(rootfs={"type": "layers", "diff_ids": ["sha512:" + "0" * 128]}),
        "unsupported digest algorithm 'sha512'",
    ),
    "diff-ids-count": (dict(rootfs={"type": "layers", "diff_ids": []}), "config 0 diff_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_that_breaks_the_oci_schema_is_one_line_at_import(pyvmm, tmp_path, case):
    changes, wanted = BAD_CONFIGS[case]
    layers = _fresh_layers()
    config = image_config(layers, Cmd=["sh"])
    for key, value in changes.items():  # config__Cmd is config["config"]["Cmd"]
        section, _, field = key.rpartition("__")
        (config[section] if section else config)[field] = value
    oci_layout(tmp_path / "oci", layers, config)
    _refused(pyvmm, tmp_path / "oci", wanted)


def test_config_type_error_in_a_docker_save_is_one_line(pyvmm, tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    layers = _fresh_layers()
    (save / "l0.tar").write_bytes(layers[0])
    (save / "cfg.json").write_text(json.dumps(image_config(layers, Entrypoint="/bin/sh")))
    (save / "manifest.json").write_text(json.dumps([{"Config": "cfg.json", "Layers": ["l0.tar"]}]))
    _refused(pyvmm, tar_of(save, tmp_path / "s.tar"), "'Entrypoint' must be a JSON array")


@pytest.mark.parametrize(
    "index, wanted",
    [
        ("[]", "must be a JSON object"),
        ('{"manifests": []}', "lists no manifests"),
        ('{"manifests": [{"digest": "sha256:' + "0" * 64 + '"}]}', "'size' must be a JSON integer"),
        ("[" * 100_000, "is not JSON"),
        ("not json", "is not JSON"),
    ],
)
def test_malformed_index_is_one_line(pyvmm, tmp_path, index, wanted):
    path, _ = _layout(tmp_path)
    (path / "index.json").write_text(index)
    _refused(pyvmm, path, wanted)


def test_document_larger_than_the_bound_is_refused_unread(pyvmm, tmp_path):
    path, _ = _layout(tmp_path)
    with open(path / "index.json", "w") as f:
        f.write('{"manifests": [], "pad": "' + "x" * (5 << 20) + '"}')
    _refused(pyvmm, path, "larger than 4 MiB")


# Import sources.


def test_fifo_source_is_refused_without_waiting_for_a_writer(pyvmm, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _refused(pyvmm, tmp_path / "fifo", "is a FIFO")


def test_device_and_socket_sources_are_refused(pyvmm, socket_dir):
    _refused(pyvmm, Path("/dev/zero"), "is a character device")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(socket_dir / "sock"))
        _refused(pyvmm, socket_dir / "sock", "is a socket")


def test_truncated_rootfs_tar_is_one_line(pyvmm, tmp_path):
    data = tar_bytes([entry("big", data=os.urandom(100_000)), entry("after", data=b"x")])
    (tmp_path / "cut.tar").write_bytes(data[:50_000])
    _refused(pyvmm, tmp_path / "cut.tar", "unexpected end of data")


def test_truncated_gzip_rootfs_tar_is_one_line(pyvmm, tmp_path):
    data = gzip.compress(tar_bytes([entry("big", data=os.urandom(100_000))]))
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    _refused(pyvmm, tmp_path / "cut.tar.gz", "cut.tar.gz")


def test_truncated_oci_archive_is_one_line(pyvmm, tmp_path):
    path, _ = _layout(tmp_path)
    archive = tar_of(path, tmp_path / "oci.tar")
    with tarfile.open(archive) as tar:
        cut = tar.getmember("index.json").offset_data + 10
    archive.write_bytes(archive.read_bytes()[:cut])
    _refused(pyvmm, archive, "truncated or corrupt tar", "unexpected end of data")


# Ctrl-C.


def _many_files() -> bytes:
    """A layer of 20,000 files: seconds to unpack, long enough to be interrupted."""
    return tar_bytes([entry(f"d/{i}", data=b"x") for i in range(20_000)])


@pytest.mark.parametrize("source", ["layout", "tar"])
def test_sigint_mid_import_leaves_nothing_in_the_state_root(pyvmm, tmp_path, source):
    """A real SIGINT to a real ``pyvmm image import`` while a layer is being unpacked:
    from an OCI layout once its first layer is stored, or from a rootfs tar."""
    if source == "layout":
        layers = [_fresh_layers()[0], _many_files()]
        oci_layout(tmp_path / "oci", layers, image_config(layers, Cmd=["sh"]))
        path, stored_first = tmp_path / "oci", 1
    else:
        path, stored_first = tmp_path / "rootfs.tar.gz", 0
        path.write_bytes(gzip.compress(_many_files()))
    before = _stored(pyvmm.root)
    store = pyvmm.root / "layers" / "sha256"
    layers_before = set(os.listdir(store))
    proc = subprocess.Popen(
        [*PYVMM, "image", "import", str(path), "interrupted"],
        env={**os.environ, "PYVMM_ROOT": str(pyvmm.root)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            new = set(os.listdir(store)) - layers_before
            unpacking = any(n.startswith(".tmp-") for n in new)
            if unpacking and sum(len(n) == 64 for n in new) == stored_first:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the import ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert _stored(pyvmm.root) == before
