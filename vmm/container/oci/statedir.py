"""A container's state directory, ``<root>/<id>/``, and runc's rule for the id: what a
command can learn before it imports the OCI core (``runtime.py``), whose typed records
(dataclasses, typing, pathlib) cost three times ``python -c pass`` on every call.

Docker's shim deletes every container twice, the second time with ``--force`` after the
first has removed it; that call needs to know only that the directory is gone.
"""

from __future__ import annotations

import os
import re

from vmm.errors import PyvmmError

ID = re.compile(r"[\w+\-.]+")  # runc's container id rule


class ContainerStateError(PyvmmError):
    """An operation the container's state does not allow; runc exits 1."""

    exit_code = 1


def check_id(cid: str) -> str:
    if not cid or not ID.fullmatch(cid) or cid in (".", ".."):
        raise ContainerStateError(f"invalid container id {cid!r}: use letters, digits, + - . _")
    return cid


def gone(root: str, cid: str) -> bool:
    """Whether nothing at all is where container ``cid``'s state would be."""
    return not os.path.lexists(os.path.join(os.path.abspath(root), check_id(cid)))
