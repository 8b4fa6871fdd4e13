"""The one workload every row runs: its input image and the answer it must print.

The expected line is computed here, in Python, from the image's own bytes (not taken
from the tool that made the image, nor from any row), so a row that reads the wrong
data, truncates it or prints something else cannot pass for a result.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys

from vmm.bench.machineinfo import REPO
from vmm.errors import PyvmmError

MKIMAGE = os.path.join(REPO, "scripts", "mkimage.py")
MAGIC = b"PYVMMWL1"
BLOCK = 512
PREFIX = b"workload: "


def make_command(path: str, size: int) -> list[str]:
    """The command that writes the input image (recorded with the results)."""
    return [sys.executable, MKIMAGE, path, "--size", str(size)]


def expected_line(path: str) -> bytes:
    """``workload: bytes=N sha256=HEX``: the SHA-256 of the image's data blocks."""
    with open(path, "rb") as f:
        header = f.read(BLOCK)
        if header[:8] != MAGIC:
            raise PyvmmError(f"{path} is not a workload image (no {MAGIC.decode()} header)")
        (length,) = struct.unpack_from("<Q", header, 8)
        digest = hashlib.sha256()
        left = length
        while left:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                raise PyvmmError(f"{path} is shorter than the {length} data bytes it announces")
            digest.update(chunk)
            left -= len(chunk)
    return b"workload: bytes=%d sha256=%s" % (length, digest.hexdigest().encode())


def result_line(stdout: bytes) -> tuple[bytes | None, int]:
    """The first line the workload printed, and its offset in the output (or -1)."""
    offset = 0 if stdout.startswith(PREFIX) else stdout.find(b"\n" + PREFIX) + 1
    if offset == 0 and not stdout.startswith(PREFIX):
        return None, -1
    end = stdout.find(b"\n", offset)
    return stdout[offset : end if end >= 0 else len(stdout)].rstrip(b"\r"), offset
