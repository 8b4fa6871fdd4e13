"""Lab 19's checks: the student's layout is an OCI image that pyvmm imports, verifying
every link, and runs.

The check gives three folders (busybox's root filesystem, then two layers that both
hold /message, the top one with a fresh word), runs make_image.py on them, imports the
layout with ``pyvmm image import`` into a state root of its own (removed afterwards),
and runs the image without a command: only its config can say what to run.
"""

import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import rootfs  # noqa: E402

from vmm.course.labs import Check, CheckFailed, run_student, tail  # noqa: E402

TITLE = "Images by hand: an OCI layout, its digests, manifest and config"
CONCEPT = "content addressing: blobs named by sha256, descriptors, diff_ids, the index"
NEEDS = ("root",)
FILES = ("make_image.py",)
COMMAND = "/bin/cat /message"

# What pyvmm's importer says of each broken link (vmm/container/image/layout.py, importer.py),
# and what it means for the layout's writer.
_MEANING = {
    "diff_id": "a diff_id is the sha256 of the layer's tar *uncompressed*, in layer order",
    "digest mismatch": "a blob's digest is the sha256 of exactly the bytes in its file",
    "descriptor gives": "a descriptor's size is the length in bytes of the blob's file",
    "longer than": "a descriptor's size is the length in bytes of the blob's file",
}


def _pyvmm(workdir: Path, state: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vmm", *args]
    return run_student(command, workdir, timeout=60, env={"PYVMM_ROOT": str(state)})


def _import(workdir: Path, state: Path, unless: str = "") -> tuple[str, str]:
    """Write the student's layout from the check's folders and import it into ``state``;
    return the word the top layer holds, and the importer's error if ``unless`` names
    it (that error is another check's); fail with any other."""
    word = secrets.token_hex(4)
    base = rootfs(workdir)
    for name, text in (("middle", "the middle layer\n"), ("top", f"the top layer {word}\n")):
        folder = workdir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "message").write_text(text)
    layout = workdir / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    args = ["make_image.py", "--cmd", COMMAND, "layout", str(base), "middle", "top"]
    made = run_student(args, workdir, timeout=60)
    if made.returncode:
        raise CheckFailed(f"make_image.py exited {made.returncode}:\n{tail(made)}")
    if not (layout / "oci-layout").is_file():
        raise CheckFailed(
            "no layout/oci-layout file: without it a layout is a folder like any other, "
            "and pyvmm image import would take it for a root filesystem"
        )
    proc = _pyvmm(workdir, state, "image", "import", "layout", f"lab19:{word}")
    error = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    if proc.returncode and not (unless and unless in error):
        meaning = next((f"\n      ({m})" for key, m in _MEANING.items() if key in error), "")
        raise CheckFailed(f"pyvmm image import refused the layout:\n      {error}{meaning}")
    return word, error if proc.returncode else ""


def _state() -> tempfile.TemporaryDirectory:
    """The check's own state root: its image and container are nobody else's."""
    return tempfile.TemporaryDirectory(prefix="pyvmm-lab-root-", ignore_cleanup_errors=True)


def blobs_are_content_addressed(workdir: Path) -> str:
    with _state() as state:
        _, error = _import(workdir, Path(state), unless="diff_id")
    if error:  # the importer stopped at that layer: what it read before was right
        return "every blob pyvmm image import read before a diff_id (next check) was right"
    return "pyvmm image import found every blob where its digest says, of its size"


def diff_ids_name_uncompressed_layers(workdir: Path) -> str:
    with _state() as state:
        _import(workdir, Path(state))
    return "each diff_id is the sha256 of its layer uncompressed"


def image_runs(workdir: Path) -> str:
    with _state() as state:
        word, _ = _import(workdir, Path(state))
        proc = _pyvmm(workdir, Path(state), "container", "run", "--rm", f"lab19:{word}")
    want = f"the top layer {word}"
    if proc.returncode or proc.stdout.strip() != want:
        raise CheckFailed(
            f"run without a command, the image should print '{want}' (its config's Cmd "
            f"is '{COMMAND}', and the top layer's /message hides the middle one's); "
            f"it gave status {proc.returncode}:\n{tail(proc)}"
        )
    return f"the image runs its Cmd, and the top layer wins: '{want}'"


CHECKS = [
    Check(
        "every blob is named by its sha256, and its descriptor gives its size",
        "hash exactly the bytes you write (after gzip, for a layer) and name the file "
        "blobs/sha256/<hex>; the descriptor's digest is 'sha256:<hex>'",
        blobs_are_content_addressed,
    ),
    Check(
        "the config's diff_ids are the digests of the uncompressed layers",
        "the blob is the gzip, the diff_id the tar inside it: a layer keeps its diff_id "
        "however it is compressed for the road",
        diff_ids_name_uncompressed_layers,
    ),
    Check(
        "the image runs: its layers stacked bottom first, its default command from the config",
        "manifest layers and config diff_ids both bottom first; Cmd goes under the config's "
        "'config' key, not at its top level",
        image_runs,
    ),
]
