"""Lab 27's checks: the student's layer_map.py finds each layer of an image pyvmm built
in the store, bottom first, and reads in each what its build step did: the files a COPY
copied, what a RUN's command changed, a deleted file as a whiteout and a directory made
anew as opaque.

Each run builds, with ``pyvmm image build`` on a state root of its own (busybox's root
filesystem imported as the base), a Containerfile whose COPY carries a fresh word; then
runs ``python layer_map.py STATE lab27:WORD`` and compares what it prints with the
image's record as ``pyvmm image inspect`` gives it and with what each step is known to
have done. Everything goes afterwards.
"""

import json
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import rootfs  # noqa: E402

from vmm.course.labs import Check, CheckFailed, once, pyvmm_on, run_student, tail  # noqa: E402

TITLE = "Build an image, then find each layer in the store"
CONCEPT = "a build step's layer is its container's writable layer: files, whiteouts, opaque dirs"
NEEDS = ("root",)
FILES = ("layer_map.py",)
CONTAINERFILE = """\
FROM busybox
COPY word.txt /lab/word.txt
RUN rm /etc/group && cat /lab/word.txt > /lab/run.txt
RUN rm -rf /lab && mkdir /lab && echo again > /lab/again
ENV NOT_A_LAYER=1
"""
# What each step is known to have done to the image below it (the base's own layer
# holds busybox: not checked entry by entry).
COPIED = ["A /lab", "A /lab/word.txt"]
RAN = ["A /etc", "D /etc/group", "A /lab", "A /lab/run.txt"]
REMADE = ["O /lab", "A /lab/again"]


def _build_and_map(workdir: Path) -> tuple[list[list[str]], list[dict]]:
    """(the student's blocks, each a list of lines; pyvmm's own list of the layers)."""
    with tempfile.TemporaryDirectory(prefix="pyvmm-lab27-", ignore_cleanup_errors=True) as tmp:
        tmp, word = Path(tmp), secrets.token_hex(4)
        state, context = tmp / "state", tmp / "context"
        context.mkdir()
        (context / "Containerfile").write_text(CONTAINERFILE)
        (context / "word.txt").write_text(f"built {word}\n")
        try:
            pyvmm_on(state, "image", "import", str(rootfs(workdir)), "busybox")
            pyvmm_on(state, "image", "build", "-t", f"lab27:{word}", str(context))
            pyvmm_layers = json.loads(pyvmm_on(state, "image", "inspect", f"lab27:{word}"))
            proc = run_student(["layer_map.py", str(state), f"lab27:{word}"], workdir, 120)
        finally:
            from vmm.container.linux.fdtree import remove_tree

            if state.exists():
                remove_tree(state)
    if proc.returncode:
        raise CheckFailed(f"layer_map.py exited {proc.returncode}:\n{tail(proc)}")
    blocks = [b.splitlines() for b in proc.stdout.strip().split("\n\n")]
    return blocks, pyvmm_layers["layers"]


def _mapped(workdir: Path) -> tuple[list[list[str]], list[dict]]:
    return once(workdir, FILES, lambda: _build_and_map(workdir))


def layers_bottom_first(workdir: Path) -> str:
    blocks, layers = _mapped(workdir)
    found = [b[0].split() if b else [] for b in blocks]
    want = [[d["digest"], str(d["size"])] for d in layers]
    if [f[:1] for f in found] == [w[:1] for w in reversed(want)] and len(want) > 1:
        raise CheckFailed(
            "the layers are there, but top first: the image's record lists them bottom "
            "(the base) first, the order overlayfs stacks them in"
        )
    if [f[:1] for f in found] != [w[:1] for w in want]:
        raise CheckFailed(
            f"the image has {len(want)} layers, {', '.join(w[0][:19] for w in want)}..., bottom "
            f"first; layer_map.py printed {len(found)} blocks starting "
            f"{', '.join(' '.join(f)[:19] for f in found)}"
        )
    if found != want:
        raise CheckFailed(
            "the digests are right, but the sizes are not those in each layer.json: "
            f"{[f[-1] for f in found]} against {[w[1] for w in want]}"
        )
    return f"{len(want)} layers (the base, COPY, RUN, RUN; ENV makes none), each with its size"


def step_layers(workdir: Path) -> str:
    blocks, _ = _mapped(workdir)
    if len(blocks) != 4:
        raise CheckFailed(f"4 layers expected (base, COPY, RUN, RUN), {len(blocks)} printed")
    if blocks[1][1:] != COPIED:
        raise CheckFailed(f"the COPY's layer should hold exactly {COPIED}, not {blocks[1][1:]}")
    if not {"A /lab/run.txt", "A /etc"} <= set(blocks[2]) or "A /lab/word.txt" in blocks[2]:
        raise CheckFailed(
            f"the first RUN's layer should hold what its command changed ({RAN}) and nothing "
            f"it left alone, not {blocks[2][1:]}"
        )
    return "COPY's layer holds the copied file; a RUN's, only what its command changed"


def whiteouts_and_opaque(workdir: Path) -> str:
    blocks, _ = _mapped(workdir)
    if len(blocks) != 4:
        raise CheckFailed(f"4 layers expected (base, COPY, RUN, RUN), {len(blocks)} printed")
    if blocks[2][1:] != RAN:
        raise CheckFailed(
            f"'rm /etc/group' left a whiteout in the RUN's layer (a 0/0 character device): "
            f"expected {RAN}, got {blocks[2][1:]}"
        )
    if blocks[3][1:] != REMADE:
        raise CheckFailed(
            f"'rm -rf /lab && mkdir /lab' made /lab an opaque directory (its "
            f"trusted.overlay.opaque xattr): expected {REMADE}, got {blocks[3][1:]}"
        )
    return "rm left a D whiteout, a directory made anew is O, opaque"


CHECKS = [
    Check(
        "each layer of the built image is found in the store, bottom first",
        "images/<name>/<tag>.json lists the digests bottom first; each layer's folder is "
        "layers/sha256/<hex>, its size in layer.json",
        layers_bottom_first,
    ),
    Check(
        "each step's layer holds what that step changed, and nothing else",
        "walk the layer's diff/ folder: every entry in it is something the step added or "
        "changed (COPY's files; what the RUN's command wrote)",
        step_layers,
    ),
    Check(
        "a deleted file is a whiteout, a directory made anew is opaque",
        "a character device numbered 0/0 is a whiteout (D); a directory with "
        "trusted.overlay.opaque = y is opaque (O)",
        whiteouts_and_opaque,
    ),
]
