"""Names of containers, images, tags and volumes: checked before they touch the disk.

A name becomes a directory or file name under the state directory, so anything that
could walk out of it (``..``, ``/``) or break a path (empty, too long) is refused with
a message the user can act on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from vmm.errors import PyvmmError

MAX_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a safe name for a ``kind`` (container, volume...)."""
    if not name:
        raise PyvmmError(f"{kind} name is empty")
    if len(name) > MAX_NAME:
        raise PyvmmError(f"{kind} name is longer than {MAX_NAME} characters: {name[:20]}...")
    if not _NAME.fullmatch(name):
        raise PyvmmError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def checker(kind: str) -> Callable[[str], str]:
    """``check_name`` for one kind of name (for ``Annotated`` record fields)."""
    return functools.partial(check_name, kind)


def split_image_ref(ref: str) -> tuple[str, str]:
    """``NAME[:TAG]`` to ``(name, tag)``, both checked; the tag defaults to ``latest``."""
    name, _, tag = ref.partition(":")
    return check_name("image", name), check_name("tag", tag or "latest")
