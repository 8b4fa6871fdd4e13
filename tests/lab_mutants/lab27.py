"""Wrong layer maps of lab 27: each misreads the store somewhere a student might."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "the layers listed top first",
        "layer_map.py",
        "bottom",
        edits=(('    return record["layers"]\n', '    return record["layers"][::-1]\n'),),
    ),
    Mutant(
        "a whiteout taken for a file the layer adds",
        "layer_map.py",
        "whiteout",
        edits=(
            (
                "    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:\n",
                "    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 1:\n",
            ),
        ),
    ),
    Mutant(
        "the opaque xattr never read",
        "layer_map.py",
        "opaque",
        edits=(
            (
                '            if os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y":\n',
                '            if os.getxattr(path, "user.opaque", follow_symlinks=False) == b"y":\n',
            ),
        ),
    ),
    Mutant(
        "the size summed from the files seen, not the store's record",
        "layer_map.py",
        "sizes",
        edits=(
            (
                '(layer_dir(state, digest) / "layer.json").read_text())["size"]\n',
                '(layer_dir(state, digest) / "layer.json").read_text())["size"] + 1\n',
            ),
        ),
    ),
]
