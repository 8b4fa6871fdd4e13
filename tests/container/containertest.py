"""What the container tests share: the real ``pyvmm`` command line, tar members for
hand-made layers, OCI layouts and ``docker save`` archives built from them, the checks
that a failure is one line and leaves nothing behind, and a sentinel tree standing for
the host files a hostile image must not reach.

(A module of its own, not the conftest: test modules import these by name.)
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from vmm.container.store.state import RUNTIME_ROOT, Store

REPO = Path(__file__).resolve().parents[2]
PYVMM = [sys.executable, "-c", "import sys; from vmm.cli.group import main; sys.exit(main())"]
RUNTIME = [sys.executable, "-c", "import sys; from vmm.cli.runtime import main; "
           "sys.exit(main())"]  # fmt: skip


class Pyvmm:
    """Runs the real ``pyvmm`` command line against the session's state directory
    (with ``python``, the interpreter it runs on, if not this one)."""

    def __init__(self, root: Path, python: Path | None = None):
        self.root = root
        self.command = [str(python or PYVMM[0]), *PYVMM[1:]]
        self.timeout = 60.0  # seconds a command may take unless the call says otherwise

    def __call__(self, *args: str, input: str | None = None, timeout: float | None = None, **kw):
        env = {**os.environ, "PYVMM_ROOT": str(self.root)}
        return subprocess.run(
            [*self.command, *map(str, args)], input=input, capture_output=True, text=True,
            env=env, timeout=timeout or self.timeout, **kw,
        )  # fmt: skip

    def ok(self, *args: str, **kw) -> str:
        """Run and insist on success; return stdout."""
        r = self(*args, **kw)
        assert r.returncode == 0, f"pyvmm {' '.join(map(str, args))}: {r.returncode}\n{r.stderr}"
        return r.stdout

    def inspect(self, name: str) -> dict:
        return json.loads(self.ok("container", "inspect", name))

    def import_tar(self, members: list[tuple[tarfile.TarInfo, bytes | None]], ref: str, tmp: Path):
        """Import a layer tar built from ``members``; returns the CompletedProcess."""
        path = tmp / f"{ref.replace(':', '_')}.tar"
        with tarfile.open(path, "w") as tar:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self("image", "import", path, ref)


class Runtime:
    """The real pyvmm-runtime on a private state directory, and bundles for it."""

    def __init__(self, root: Path, tmp: Path, rootfs: Path, python: Path | None = None):
        self.root, self.tmp, self.rootfs = root, tmp, rootfs
        self.command = [str(python or RUNTIME[0]), *RUNTIME[1:]]
        self.cgroup = f"pyvmm-test-{os.getpid()}-{os.urandom(3).hex()}"
        # Every runtime process, and a container's init until it execs, carries this.
        self.env = {**os.environ, "PYVMM_RUNTIME_TEST": self.cgroup}

    def __call__(self, *args, timeout: float = 30) -> subprocess.CompletedProcess:
        """Output through files, not pipes: a created container's init keeps the
        runtime's stdio (an engine's, normally) open until it exits."""
        import tempfile

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run([*self.command, "--root", str(self.root), *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                               timeout=timeout, env=self.env)  # fmt: skip
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r

    def ok(self, *args, **kw) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"pyvmm-runtime {' '.join(map(str, args))}: {r.stderr}"
        return r.stdout

    def bundle(self, args: list[str], name: str = "b", **change) -> Path:
        """A bundle on the shared rootfs (read-only root), running ``args``."""
        b = self.tmp / name
        b.mkdir()
        os.symlink(self.rootfs, b / "rootfs")
        self.ok("spec", "--bundle", b)
        config = json.loads((b / "config.json").read_text())
        config["process"].update(terminal=False, args=args)
        config["linux"]["cgroupsPath"] = f"/{self.cgroup}/{name}"
        for key, value in change.items():
            where = config
            *path, last = key.split("__")
            for p in path:
                where = where.setdefault(p, {})
            where[last] = value
        (b / "config.json").write_text(json.dumps(config))
        return b

    def run(self, args: list[str], **change) -> subprocess.CompletedProcess:
        b = self.bundle(args, name=f"r{os.urandom(3).hex()}", **change)
        return self("run", "--bundle", b, b.name)


@contextlib.contextmanager
def leaves_nothing(runtime: Runtime) -> Iterator[Runtime]:
    """``runtime`` for the length of a ``with``; on the way out its containers are
    deleted, and nothing it made may be left: state, its cgroups, mounts under the
    session's tmp directory (which holds every test's bundles and rootfs), processes.
    Only what the test made: another suite's mounts on the machine are not its own."""
    work = runtime.tmp.parent  # the session's pytest base temp: tmp_path's parent
    before = mounts_under(work)
    try:
        yield runtime
    finally:
        for cid in runtime("list", "-q").stdout.split():
            runtime("delete", "--force", cid)
    left = mounts_under(work, runtime.tmp) - before
    assert not left, f"mounts left behind: {left}"
    left = glob.glob(f"/sys/fs/cgroup/{runtime.cgroup}") + glob.glob(
        f"/sys/fs/cgroup/*/{runtime.cgroup}"
    )
    assert not left, f"cgroups left behind: {left}"
    assert not list(runtime.root.glob("*")), "state left behind"
    assert not processes_with(f"PYVMM_RUNTIME_TEST={runtime.cgroup}"), "processes left behind"


def busybox_rootfs(dest: Path) -> None:
    """scripts/build_images.py's busybox root filesystem, into ``dest``."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_images
    finally:
        sys.path.pop(0)
    build_images.busybox_rootfs(dest)


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (NAME=value)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"", **attrs):
    """One tar member for ``Pyvmm.import_tar``."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    if kind == tarfile.REGTYPE:
        info.size = len(data or b"")
    for k, v in attrs.items():
        setattr(info, k, v)
    return info, data if kind == tarfile.REGTYPE else None


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A layer tar built from ``entry`` members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def image_config(layer_tars: list[bytes], **run) -> dict:
    """The OCI image config of these (uncompressed) layers, with ``run`` as its config."""
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layer_tars]
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }


def oci_blob(path: Path, data: bytes, media_type: str) -> dict:
    """Write ``data`` as a blob of the layout at ``path``; return its descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def oci_layout(path: Path, layer_tars: list[bytes], config: dict, compress: bool = True) -> dict:
    """Write an OCI image layout; return the descriptors of its manifest, config and
    layers (for tests that corrupt one)."""
    kind = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
    layers = [oci_blob(path, gzip.compress(t) if compress else t, kind) for t in layer_tars]
    config_desc = oci_blob(
        path, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"
    )
    manifest = {"schemaVersion": 2, "config": config_desc, "layers": layers}
    manifest_desc = oci_blob(
        path, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
    )
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"manifest": manifest_desc, "config": config_desc, "layers": layers}


def blob_file(layout: Path, desc: dict) -> Path:
    return layout / "blobs" / "sha256" / desc["digest"].removeprefix("sha256:")


def tar_of(tree: Path, out: Path) -> Path:
    """``tree``'s contents as the tar ``out``, symlinks kept as symlink members."""
    with tarfile.open(out, "w") as tar:
        for entry in sorted(tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    return out


def one_line_error(r) -> str:
    """The failed command's stderr, checked to be the single ``pyvmm: ...`` line."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyvmm: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def pyvmm_processes(root: Path) -> list[int]:
    """Processes other than this one started with PYVMM_ROOT=root (CLIs and monitors)."""
    marker = f"PYVMM_ROOT={root}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker in f.read().split(b"\0") and int(pid) != os.getpid():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def mounts_under(*paths: Path) -> set[tuple[str, str]]:
    """The mounts (root, mount point) at or below ``paths``. A leak check looks only
    where its test works (its state root, its tmp directories): the rest of the host's
    mount table belongs to whoever else is using the machine meanwhile."""
    tops = [str(p) for p in paths]
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            # The kernel writes a space in a path as \040, and so on.
            where = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])
            if any(where == top or where.startswith(top + "/") for top in tops):
                found.add((fields[3], where))
    return found


def host_state(root: Path, work: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """The mounts under ``work`` (which holds ``root``), and the cgroups of this state
    root's containers (its own parent: see state.Store)."""
    parent = Store(root).cgroup_parent
    return mounts_under(work), {
        *glob.glob(f"/sys/fs/cgroup/{parent}"),
        *glob.glob(f"/sys/fs/cgroup/*/{parent}"),
    }


def core_states(root: Path) -> list[Path]:
    """The OCI core's states (``/run/pyvmm/<id>/``) of this state root's containers:
    those whose bundle is in it (other helpers' roots use the same /run/pyvmm)."""
    found = []
    for path in RUNTIME_ROOT.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(path.read_text())["bundle"].startswith(f"{root}/"):
                found.append(path.parent)
    return found


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
