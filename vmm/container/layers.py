"""Image layers in the store, and how overlayfs stacks them.

Each layer is a directory, ``layers/sha256/<hex>/diff``, unpacked once by
``unpack.py`` and shared by every image that contains it. overlayfs mounts them as
read-only ``lowerdir``s, topmost first, under a container's writable ``upperdir``.

Deletions need a representation, because a lower layer cannot be changed. The OCI
image format writes a file ``.wh.NAME`` to hide NAME in the layers below, and
``.wh..wh..opq`` in a directory to hide all of that directory's lower content;
overlayfs spells the same things as a 0/0 character device named NAME and the xattr
``trusted.overlay.opaque=y`` on the directory. Layers are stored in overlayfs's
spelling, so they can be mounted as they are; a container's upper directory uses it
too, which is what ``diff`` reads.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from vmm.container.state import Store, read_json, remove_tree

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


def layer_dir(store: Store, digest: str) -> Path:
    """The lower directory overlayfs mounts for the layer ``digest``."""
    return store.layers / digest.removeprefix("sha256:") / "diff"


def remove(store: Store, digest: str) -> None:
    remove_tree(store.layers / digest.removeprefix("sha256:"))


def size(store: Store, digest: str) -> int:
    return read_json(store.layers / digest.removeprefix("sha256:") / "layer.json")["size"]


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    with contextlib.suppress(OSError):
        return os.getxattr(path, OPAQUE_XATTR) == b"y"
    return False


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    """Whether ``rel`` is visible in the union of ``lowers`` (topmost first)."""
    parts = rel.split("/")
    for layer in lowers:
        path = os.path.join(layer, rel)
        try:
            return not is_whiteout(os.lstat(path))
        except FileNotFoundError:
            pass
        for i in range(1, len(parts)):
            ancestor = os.path.join(layer, *parts[:i])
            with contextlib.suppress(FileNotFoundError):
                if is_whiteout(os.lstat(ancestor)) or _is_opaque(ancestor):
                    return False
    return False


def diff(upper: Path, lowers: list[Path]) -> list[tuple[str, str]]:
    """Docker's ``diff``: sorted ('A'|'C'|'D', path) for each entry of the writable layer.

    Everything in the upper directory was added or changed by the container; a
    whiteout there is a deletion; an entry the lower layers also show is a change.
    """
    changes = []
    for dirpath, dirs, files in os.walk(upper):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, upper)
            if is_whiteout(os.lstat(full)):
                changes.append(("D", "/" + rel))
            else:
                changes.append(("C" if _in_lowers(lowers, rel) else "A", "/" + rel))
    return sorted(changes, key=lambda c: c[1])
