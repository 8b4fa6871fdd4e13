"""Lab 27: each layer of a built image, found in pyvmm's store, and what it holds.

Usage: python layer_map.py STATE IMAGE[:TAG]

STATE is a pyvmm state root (the folder PYVMM_ROOT names), IMAGE an image in it (built
with ``pyvmm image build``). Prints each of the image's layers, bottom first, a blank
line between two:

    sha256:<hex> SIZE      the layer's name in the store, and the size pyvmm recorded
    A /path                an entry the layer holds (added, or changed from below)
    D /path                a whiteout: the layer deletes /path from the layers below
    O /path                an opaque directory: it hides all that is below it there

the entries sorted by path. The store (docs/containers.md, section 1):

    images/<name>/<tag>.json             the image: "layers", digests bottom first
    layers/sha256/<hex>/layer.json       a layer's record: "digest", "size"
    layers/sha256/<hex>/diff/            its files, as overlayfs mounts them
"""

import json
import os
import stat
import sys
from pathlib import Path

# overlayfs's own spelling of "hide what is below", in which pyvmm stores layers
# (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").
OPAQUE_XATTR = "trusted.overlay.opaque"


def image_layers(state: Path, name: str, tag: str) -> list[str]:
    """The image's layer digests, bottom (the base) first."""
    # >>> 27: read the image's record, STATE/images/<name>/<tag>.json (JSON), and
    # ... return its "layers": the digests, bottom first, in the order pyvmm keeps them
    #| raise NotImplementedError
    record = json.loads((state / "images" / name / f"{tag}.json").read_text())
    return record["layers"]
    # <<<


def layer_dir(state: Path, digest: str) -> Path:
    """The layer's folder in the store: its hex digest under layers/sha256/."""
    return state / "layers" / "sha256" / digest.removeprefix("sha256:")


def layer_size(state: Path, digest: str) -> int:
    """The size pyvmm summed when it unpacked the layer."""
    # >>> 27: "size" in the layer's record, layer.json in its folder
    #| raise NotImplementedError
    return json.loads((layer_dir(state, digest) / "layer.json").read_text())["size"]
    # <<<


def kind(path: Path, st: os.stat_result) -> str:
    """'D', 'O' or 'A' for one entry of a layer's diff/ (``st``: its lstat)."""
    # >>> 27: a character device numbered 0/0 (st_rdev 0) is a whiteout: D; a directory
    # ... whose trusted.overlay.opaque xattr is b"y" is opaque: O (os.getxattr, not
    # ... following a symlink; a directory without it raises OSError); the rest: A
    #| raise NotImplementedError
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return "D"
    if stat.S_ISDIR(st.st_mode):
        try:
            if os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                return "O"
        except OSError:
            pass
    return "A"
    # <<<


def entries(diff: Path) -> list[tuple[str, str]]:
    """(kind, /path) of everything under ``diff``, sorted by path; no symlink followed,
    no recursion (a layer may be deeper than Python's stack)."""
    found, stack = [], [diff]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as listing:
            for e in listing:
                st = e.stat(follow_symlinks=False)
                found.append((kind(Path(e.path), st), "/" + os.path.relpath(e.path, diff)))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(Path(e.path))
    return sorted(found, key=lambda f: f[1])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    state = Path(argv[0])
    name, _, tag = argv[1].partition(":")
    blocks = []
    for digest in image_layers(state, name, tag or "latest"):
        lines = [f"{digest} {layer_size(state, digest)}"]
        lines += [f"{k} {p}" for k, p in entries(layer_dir(state, digest) / "diff")]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
