#!/usr/bin/env python3
"""Build the two container images the tests, the docs and the benchmark use.

- ``busybox:latest``: one layer, a root filesystem holding Debian's statically linked
  busybox (package busybox-static) and a symlink per applet, imported as a directory.
- ``workload:latest``: the same base layer plus a second layer adding one static
  executable as /bin/workload (by default the workload built by
  ``make -C guest/workload``; ``--workload PATH`` takes any static executable). It is
  written as an OCI image layout and imported from there, so its first layer has the
  very digest of busybox's and is stored once.

    .venv/bin/python scripts/build_images.py [--root DIR] [--workload PATH]
                                             [--oci-archive FILE]

``--oci-archive FILE`` also writes the workload image as an OCI archive (a tar of
the layout) for other engines: ``podman load -i FILE`` and ``ctr image import FILE``
both name it ``localhost/pyvmm-workload:latest``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from vmm.container.image import importer, unpack
from vmm.container.store.state import Store

BUSYBOX = Path("/bin/busybox")
WORKLOAD = Path(__file__).resolve().parent.parent / "guest" / "workload" / "workload"


def busybox_rootfs(dest: Path) -> None:
    """A minimal root filesystem: busybox, its applets, and the usual directories."""
    for d in ("bin", "dev", "etc", "proc", "root", "sys", "tmp", "var"):
        (dest / d).mkdir(mode=0o1777 if d == "tmp" else 0o755)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            os.symlink("busybox", dest / "bin" / applet)
    (dest / "sbin").symlink_to("bin")
    (dest / "usr").mkdir()
    (dest / "usr" / "bin").symlink_to("../bin")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")


def _blob(layout: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


ENGINE_NAME = "localhost/pyvmm-workload:latest"


def workload_layout(layout: Path, rootfs: Path, executable: Path) -> None:
    """An OCI image layout: the busybox layer, then a layer with ``executable``."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    base = io.BytesIO()
    unpack.tar_directory(rootfs, base)
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(executable, arcname="bin/workload")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        with open(executable, "rb") as f:
            tar.addfile(info, f)
    tar_type = "application/vnd.oci.image.layer.v1.tar"
    layer_descs = [_blob(layout, t.getvalue(), tar_type) for t in (base, top)]
    diff_ids = [d["digest"] for d in layer_descs]  # uncompressed: blob digest = diff id
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/workload"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        # config.md "history", one entry a layer: buildah's cache (``bud --layers``)
        # refuses a base image whose history lists fewer layers than it has.
        "history": [{"created_by": "busybox-static"}, {"created_by": "COPY workload /bin/"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _blob(
            layout, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"
        ),
        "layers": layer_descs,
    }
    desc = _blob(layout, json.dumps(manifest).encode(), manifest["mediaType"])
    # The names Podman (image-spec's ref.name) and containerd give the image on import.
    desc["annotations"] = {
        "org.opencontainers.image.ref.name": ENGINE_NAME,
        "io.containerd.image.name": ENGINE_NAME,
    }
    index = {"schemaVersion": 2, "manifests": [desc]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("PYVMM_ROOT", "/var/lib/pyvmm"))
    parser.add_argument(
        "--workload",
        type=Path,
        default=WORKLOAD,
        help="static executable for the workload image (default: %(default)s)",
    )
    parser.add_argument("--oci-archive", type=Path, help="also write the workload image here")
    args = parser.parse_args()
    if not BUSYBOX.is_file():
        print(f"build_images: {BUSYBOX} is missing: scripts/setup.sh --all installs it "
              "(busybox-static)", file=sys.stderr)  # fmt: skip
        return 2
    store = Store(args.root)
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        rootfs.mkdir()
        busybox_rootfs(rootfs)
        record = importer.import_image(store, rootfs, "busybox:latest")
        print(f"busybox:latest {record.id[:12]}")
        if not args.workload.is_file():
            print(
                f"build_images: no workload at {args.workload} (make -C guest/workload, "
                "or pass --workload PATH); workload image not built",
                file=sys.stderr,
            )
            return 0
        workload_layout(Path(tmp) / "layout", rootfs, args.workload)
        record = importer.import_image(store, Path(tmp) / "layout", "workload:latest")
        print(f"workload:latest {record.id[:12]}")
        if args.oci_archive:
            with tarfile.open(args.oci_archive, "w") as tar:
                for entry in sorted((Path(tmp) / "layout").iterdir()):
                    tar.add(entry, arcname=entry.name)
            print(f"{ENGINE_NAME} {args.oci_archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
