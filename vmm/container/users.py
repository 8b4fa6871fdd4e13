"""``-u USER[:GROUP]``: a user and group named as Docker takes them, resolved to ids
in the image's own ``/etc/passwd`` and ``/etc/group``.

The runtime spec knows only numbers (config.md "User"); the names belong to the
image, so the engine looks them up in the container's files, as Docker (containerd's
``WithUser``) and runc's ``user.GetExecUser`` do, by the same rules:

- a name must be in ``/etc/passwd``; a number need not (its group is then 0);
- the group, if given, is a name from ``/etc/group`` or a number; if not given, the
  user's own from ``/etc/passwd``, and the groups that list the user as a member
  become the supplementary ones;
- ``HOME`` is the user's home directory (``/`` for a number not in the file).

The files come from the image (``layers.read_file``): untrusted text, read up to a
bound, lines that do not parse skipped (runc skips them too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmm.errors import PyvmmError

MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "no change" to setresuid(2): never an id


@dataclass
class ExecUser:
    """Who the container's process runs as (config.md "User" plus its home)."""

    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def _entries(text: str, fields: int) -> list[list[str]]:
    """The colon-separated lines of a passwd or group file with at least ``fields``
    fields (comments and short lines are skipped, as by runc)."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if line.startswith("#") or len(parts) < fields:
            continue
        rows.append(parts)
    return rows


def resolve(spec: str, passwd: str, group: str) -> ExecUser:
    """``spec`` (``USER[:GROUP]``, each a name or a number) against the files' text."""
    user_arg, has_group, group_arg = spec.partition(":")
    if not user_arg or (has_group and not group_arg):
        raise PyvmmError(f"invalid user {spec!r}: use NAME|UID[:GROUP|GID]")
    uid = _number(user_arg)
    matched = None
    for row in _entries(passwd, 4):
        u, g = _number(row[2]), _number(row[3])
        if u is not None and g is not None and (row[0] == user_arg if uid is None else u == uid):
            matched = (row[0], u, g, row[5] if len(row) > 5 else "/")
            break
    if matched is None and uid is None:
        raise PyvmmError(f"unable to find user {user_arg}: no matching entries in passwd file")
    name, uid, gid, home = matched or (None, uid, 0, "/")
    groups = _entries(group, 3)
    additional = []
    if group_arg:
        gid = _number(group_arg)
        if gid is None:
            found = [_number(g[2]) for g in groups if g[0] == group_arg]
            if not found or found[0] is None:
                raise PyvmmError(
                    f"unable to find group {group_arg}: no matching entries in group file"
                )
            gid = found[0]
    elif name is not None:
        for g in groups:
            members = g[3].split(",") if len(g) > 3 else []
            if name in members and _number(g[2]) is not None:
                additional.append(_number(g[2]))
    return ExecUser(uid, gid, additional, home or "/")
