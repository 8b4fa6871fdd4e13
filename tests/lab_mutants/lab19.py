"""Wrong image layouts of lab 19: each breaks one link of the chain of digests, or
writes a link that holds but says the wrong thing."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "diff_ids of the compressed blobs",
        "make_image.py",
        "diff_id",
        edits=(
            (
                '        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())\n'
                "        descriptors.append(add_blob(layout, gzip.compress(tar, mtime=0), "
                "MEDIA_LAYER))\n",
                "        blob = gzip.compress(tar, mtime=0)\n"
                '        diff_ids.append("sha256:" + hashlib.sha256(blob).hexdigest())\n'
                "        descriptors.append(add_blob(layout, blob, MEDIA_LAYER))\n",
            ),
        ),
    ),
    Mutant(
        "a layer named by the digest of its tar, its file holding the gzip",
        "make_image.py",
        "digest mismatch",
        edits=(
            (
                "        descriptors.append(add_blob(layout, gzip.compress(tar, mtime=0), "
                "MEDIA_LAYER))\n",
                "        blob = gzip.compress(tar, mtime=0)\n"
                "        hexdigest = hashlib.sha256(tar).hexdigest()\n"
                '        (layout / "blobs" / "sha256" / hexdigest).write_bytes(blob)\n'
                "        descriptors.append(\n"
                '            {"mediaType": MEDIA_LAYER, "digest": f"sha256:{hexdigest}", '
                '"size": len(blob)}\n'
                "        )\n",
            ),
        ),
    ),
    Mutant(
        "every blob's file written with a newline its descriptor does not count",
        "make_image.py",
        "descriptor gives",
        edits=(
            (
                '    (layout / "blobs" / "sha256" / digest).write_bytes(data)\n',
                '    (layout / "blobs" / "sha256" / digest).write_bytes(data + b"\\n")\n',
            ),
        ),
    ),
    Mutant(
        "layers listed top first, in the manifest and the config alike",
        "make_image.py",
        "bottom first",
        edits=(("    for directory in layers:\n", "    for directory in reversed(layers):\n"),),
    ),
    Mutant(
        "Cmd at the config's top level, not under its 'config'",
        "make_image.py",
        "default command from the config",
        edits=(('        "config": {"Cmd": cmd},\n', '        "Cmd": cmd,\n'),),
    ),
]
