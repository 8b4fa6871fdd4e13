"""A user as Docker names one (``-u USER[:GROUP]``, an image's ``User``, a build's
``USER``) to the ids a container's process runs with, looked up in the container's
own ``/etc/passwd`` and ``/etc/group``.

The runtime spec knows only numbers (config.md "User"); the names belong to the
image, so the engine looks them up in the container's files, never the host's, as
Docker and runc do (moby/sys/user ``GetExecUser``), by the same rules:

- a number is always a uid (or gid); a name must be in ``/etc/passwd``, a number
  need not (its group is then 0 and its home ``/``);
- the group, if given, is a name from ``/etc/group`` or a number, and the only one;
  if not given, the user's own from ``/etc/passwd``, and the groups that list the
  user (found by name or number) as a member become the supplementary ones;
- ``HOME`` is the user's home directory.

The files come from the container's layers (``layers.read_file``): untrusted text,
read up to a bound, lines that do not parse skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vmm.container.store import layers
from vmm.errors import PyvmmError

MAX_ID = (1 << 31) - 1  # moby/sys/user's maxID: uids and gids are 0 to 2^31-1
MAX_DATABASE = 4 << 20  # bytes of a container's /etc/passwd or /etc/group read at most


@dataclass
class ExecUser:
    """Who the container's process runs as (config.md "User" plus its home)."""

    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _number(text: str, what: str) -> int | None:
    """``text`` as an id if it is a number (None if not), refused out of range."""
    if not (text.isascii() and text.isdigit()):
        return None
    if int(text) > MAX_ID:
        raise PyvmmError(f"{what} {text:.40} is out of range: ids are 0 to {MAX_ID}")
    return int(text)


def _entries(data: bytes | None, fields: int) -> list[list[str]]:
    """The lines of a passwd or group file with at least ``fields`` fields, the third
    (and for passwd the fourth) an id; comments and lines that do not parse skipped."""
    rows = []
    for line in (data or b"").decode(errors="replace").splitlines():
        parts = line.strip().split(":")
        if line.startswith("#") or len(parts) < fields:
            continue
        if all(i.isascii() and i.isdigit() and int(i) <= MAX_ID for i in parts[2 : min(fields, 4)]):
            rows.append(parts)
    return rows


def resolve(spec: str, passwd: bytes | None, group: bytes | None) -> ExecUser:
    """``spec`` (``USER[:GROUP]``, each a name or a number) against the files' bytes
    (None: the file is not there)."""
    user_arg, has_group, group_arg = spec.partition(":")
    if not user_arg or (has_group and not group_arg):
        raise PyvmmError(f"invalid user {spec!r}: use NAME|UID[:GROUP|GID]")
    uid = _number(user_arg, "user")
    row = next(
        (r for r in _entries(passwd, 4) if (r[0] == user_arg if uid is None else int(r[2]) == uid)),
        None,
    )
    if row is None and uid is None:
        raise PyvmmError(f"unable to find user {user_arg}: no matching entries in passwd file")
    if row is None:
        user = ExecUser(uid, 0)
    else:
        user = ExecUser(int(row[2]), int(row[3]), home=(row[5] if len(row) > 5 else "") or "/")
    groups = _entries(group, 3)
    if group_arg:
        gid = _number(group_arg, "group")
        if gid is None:
            found = next((g for g in groups if g[0] == group_arg), None)
            if found is None:
                raise PyvmmError(
                    f"unable to find group {group_arg}: no matching entries in group file"
                )
            gid = int(found[2])
        user.gid = gid
    elif row is not None:
        member = [g for g in groups if len(g) > 3 and row[0] in g[3].split(",")]
        user.additional_gids = [int(g[2]) for g in member]
    return user


def in_layers(tops: list[Path], spec: str) -> ExecUser:
    """``resolve`` against the files the overlay of ``tops`` (topmost first: a
    container's upper directory, then its image's layers) shows: nothing mounted, no
    symlink followed."""
    etc = [layers.read_file(tops, ["etc", name], MAX_DATABASE) for name in ("passwd", "group")]
    return resolve(spec, *etc)
