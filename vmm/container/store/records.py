"""The container store's records: written atomically, read through the one loader.

Every record pyvmm keeps in its state directory (a container's ``container.json``,
an image's ``<tag>.json``, a layer's ``layer.json``, a volume's ``volume.json``) is a
dataclass, read by ``load`` (``vmm/record.py``, the one typed loader, shared with the
snapshot manifest and the OCI core's ``state.json``: a corrupt record is ``Broken``,
never a crash) and written by ``write``, nothing else:

- ``write`` replaces the file atomically (``atomic.write_json``): a crash or a full
  disk leaves the old record or the new one, never half of one.
- ``write_in_place`` is the last resort on a full disk.

Records live in directories pyvmm names and walks itself, so their content never
names a file: a layer is referred to by its digest (``Digest``), checked against the
store's own naming before anything is built from it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

from vmm.container.linux import atomic

# The one typed loader (``vmm/record.py``), by the names the store's modules use.
from vmm.record import (  # noqa: F401
    Broken,
    RecordError,
    from_json,
    json_name,
    load,
    loaded,
    to_json,
)

# The store names a layer by the sha256 of its tar (image-spec descriptor.md,
# "Digests", with the one algorithm pyvmm stores): nothing else is ever a layer name.
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_digest(value: str) -> str:
    if not DIGEST.fullmatch(value):
        raise ValueError(f"{value!r:.80} is not a layer digest (sha256:<64 hex>)")
    return value


Digest = Annotated[str, check_digest]


def write(path: Path, record: object) -> None:
    """Replace the record in ``path`` with ``record`` atomically (``atomic.py``)."""
    atomic.write_json(path, to_json(record))


def write_in_place(path: Path, record: object) -> bool:
    """Overwrite ``path`` with ``record`` in the space it already has: the last resort
    on a full disk, where ``write`` cannot make its temporary file. Not atomic (a crash
    half-way leaves a record ``load`` calls Broken); False if it does not fit."""
    data = json.dumps(to_json(record), separators=(",", ":"), sort_keys=True).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        if len(data) > os.fstat(fd).st_size:
            return False
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        return True
    finally:
        os.close(fd)
