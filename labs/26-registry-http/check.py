"""Lab 26's checks: the student's fetch_image.py pulls an image from a real registry
with plain HTTP, refuses a blob that is not what its digest says, and writes a layout
that pyvmm imports and runs.

Each check starts a registry of its own (Debian's docker-registry, on a loopback port,
with a private storage root: ``vmm.bench.registry.LocalRegistry``) and has pyvmm push
an image into it from a state root of its own: busybox's root filesystem with a
/message holding a fresh word, tagged with that word. Everything goes afterwards.
"""

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import rootfs  # noqa: E402

from vmm.bench.registry import LocalRegistry  # noqa: E402
from vmm.container.linux.fdtree import remove_tree  # noqa: E402
from vmm.course.labs import Check, CheckFailed, run_student, tail  # noqa: E402
from vmm.course.labs import pyvmm_on as _pyvmm  # noqa: E402

TITLE = "A registry is just HTTP and content addresses"
CONCEPT = "the distribution API: a manifest and blobs by URL, each checked against its digest"
NEEDS = ("root",)
FILES = ("fetch_image.py",)
REPO = "lab/message"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@contextlib.contextmanager
def _served(workdir: Path) -> Iterator[tuple[LocalRegistry, str, str, Path]]:
    """A private registry holding REPO:<word>: (the registry, the word, the manifest's
    digest pyvmm pushed, a scratch folder)."""
    with tempfile.TemporaryDirectory(prefix="pyvmm-lab26-", ignore_cleanup_errors=True) as tmp:
        tmp = Path(tmp)
        word = secrets.token_hex(4)
        image = tmp / "image"
        shutil.copytree(rootfs(workdir), image, symlinks=True)
        (image / "message").write_text(f"fetched {word}\n")
        state = tmp / "state"
        registry = LocalRegistry(tmp / "registry")
        try:
            _pyvmm(state, "image", "import", str(image), "lab26")
            pushed = _pyvmm(state, "image", "push", "lab26", f"{registry.host}/{REPO}:{word}")
            yield registry, word, pushed.split()[-1], tmp
        finally:
            registry.stop()
            with contextlib.suppress(FileNotFoundError):
                remove_tree(state)


def _fetch(workdir: Path, registry: LocalRegistry, word: str) -> subprocess.CompletedProcess:
    layout = workdir / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    args = ["fetch_image.py", registry.host, REPO, word, "layout"]
    return run_student(args, workdir, timeout=120)


def _fetched(workdir: Path, registry: LocalRegistry, word: str, digest: str) -> None:
    """The student's script fetched the image and printed its manifest's digest."""
    proc = _fetch(workdir, registry, word)
    if proc.returncode:
        raise CheckFailed(f"fetch_image.py exited {proc.returncode}:\n{tail(proc)}")
    printed = (proc.stdout.strip().splitlines() or [""])[-1]
    if printed != digest:
        raise CheckFailed(
            f"fetch_image.py printed {printed!r:.80}, but the manifest the registry holds is "
            f"{digest}: a digest is the sha256 of the bytes as received"
        )


def manifest_by_tag(workdir: Path) -> str:
    with _served(workdir) as (registry, word, digest, _):
        _fetched(workdir, registry, word, digest)
    return f"GET /v2/{REPO}/manifests/<tag> gave the manifest pyvmm pushed"


def tampered_blob_refused(workdir: Path) -> str:
    with _served(workdir) as (registry, word, digest, _):
        _fetched(workdir, registry, word, digest)
        request = urllib.request.Request(
            f"http://{registry.host}/v2/{REPO}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            layer = json.load(response)["layers"][0]["digest"].removeprefix("sha256:")
        blob = registry.storage / f"docker/registry/v2/blobs/sha256/{layer[:2]}/{layer}/data"
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one byte changed, the size the same
        blob.write_bytes(bytes(data))
        proc = _fetch(workdir, registry, word)
    if proc.returncode == 0:
        raise CheckFailed(
            "with one byte of a layer changed in the registry's storage, fetch_image.py "
            "still succeeded: the blob's size was right, its digest was not"
        )
    if (workdir / "layout").exists():
        raise CheckFailed("fetch_image.py refused the changed blob but left layout/ behind")
    return "a layer with one byte changed (same size) is refused, and no layout is left"


def image_runs(workdir: Path) -> str:
    with _served(workdir) as (registry, word, digest, tmp):
        _fetched(workdir, registry, word, digest)
        state = tmp / "fetched-state"
        try:
            _pyvmm(state, "image", "import", str(workdir / "layout"), f"lab26:{word}")
            out = _pyvmm(state, "container", "run", "--rm", f"lab26:{word}", "/bin/cat", "/message")
        finally:
            with contextlib.suppress(FileNotFoundError):
                remove_tree(state)
    if out.strip() != f"fetched {word}":
        raise CheckFailed(f"the fetched image's /message says {out.strip()!r:.80}")
    return "pyvmm image import verified the layout, and the image runs"


CHECKS = [
    Check(
        "the manifest is fetched by tag, and named by the sha256 of its bytes",
        "GET /v2/<repo>/manifests/<tag> with 'Accept: " + OCI_MANIFEST + "'; hash the "
        "body exactly as it came, before parsing it",
        manifest_by_tag,
    ),
    Check(
        "a blob that is not what its digest says is refused",
        "hash every blob you receive and compare with the descriptor's digest (and its "
        "size): a registry is a stranger",
        tampered_blob_refused,
    ),
    Check(
        "the fetched image is an OCI layout that pyvmm imports and runs",
        "every blob under blobs/sha256/<hex>, the manifest as its bytes came",
        image_runs,
    ),
]
