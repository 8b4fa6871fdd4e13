#!/usr/bin/env python3
"""Make an input image for the workload binary (guest/workload/).

Layout, in 512-byte blocks: block 0 holds the magic ``PYVMMWL1`` and the data length N
as a little-endian u64; the data start at block 1; one zero block after the data
receives the workload's result line. The data are pseudo-random but fixed by the seed,
so a benchmark run is reproducible and two images made alike are byte-identical.

    scripts/mkimage.py OUT --size 256M [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import struct
import sys
from pathlib import Path

MAGIC = b"PYVMMWL1"
BLOCK = 512
_CHUNK = 1 << 20


def result_offset(data_bytes: int) -> int:
    """Where the workload writes its result line: the block right after the data."""
    return BLOCK + -(-data_bytes // BLOCK) * BLOCK


def make_image(path: str | Path, data_bytes: int, seed: int = 0) -> str:
    """Write the image and return the data's SHA-256 (hex), so callers need not re-read it."""
    if data_bytes < 0:
        raise ValueError("the data length cannot be negative")
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        f.write((MAGIC + struct.pack("<Q", data_bytes)).ljust(BLOCK, b"\0"))
        left = data_bytes
        while left:
            chunk = rng.randbytes(min(left, _CHUNK))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        # Zero padding to the block boundary plus the result block, as a sparse tail.
        f.truncate(result_offset(data_bytes) + BLOCK)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from vmm.memory import parse_size

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="image file to write")
    parser.add_argument("--size", required=True, type=parse_size, help="data length: 4096, 1M")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-random data")
    args = parser.parse_args(argv)
    sha = make_image(args.out, args.size, args.seed)
    print(f"{args.out}: bytes={args.size} sha256={sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
