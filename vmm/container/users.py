"""A ``USER`` (an image's ``User``) to the uid, gid and groups its processes run with.

As Docker resolves it (moby/sys/user, ``GetExecUser``): ``USER[:GROUP]``, each a name
or a number. A name is looked up in the image's own ``/etc/passwd`` and
``/etc/group`` (read from its layers, never from the host's); a number need not be
there (its group is then 0, or the passwd entry's if there is one). Without a group,
a user found by name also gets the groups ``/etc/group`` lists it in.
"""

from __future__ import annotations

from pathlib import Path

from vmm.container import layers
from vmm.errors import PyvmmError

MAX_DATABASE = 1 << 20  # a passwd or group file larger than this is read this far
MAX_ID = (1 << 31) - 1  # runtime-spec "user": uid_t and gid_t; -1 is nobody's


def _entries(data: bytes | None, fields: int) -> list[list[str]]:
    """The file's entries of at least ``fields`` fields, comments and blanks skipped."""
    lines = (data or b"").decode(errors="replace").splitlines()
    entries = [line.split(":") for line in lines if line and not line.startswith("#")]
    return [e for e in entries if len(e) >= fields]


def _id(value: str, what: str) -> int:
    if not value.isdigit() or int(value) > MAX_ID:
        raise PyvmmError(f"{what} {value!r:.40} is not a number from 0 to {MAX_ID}")
    return int(value)


def resolve(user: str, passwd: bytes | None, group: bytes | None) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) for ``user`` against the image's passwd and group."""
    name, colon, group_name = user.partition(":")
    entry = next((u for u in _entries(passwd, 4) if name in (u[0], u[2])), None)
    if entry is not None:
        uid, gid = _id(entry[2], "passwd uid"), _id(entry[3], "passwd gid")
    elif name.isdigit():
        uid, gid = _id(name, "user"), 0
    else:
        raise PyvmmError(f"unable to find user {name}: no matching entries in the image's passwd")
    groups = _entries(group, 3)
    if colon:
        found = next((g for g in groups if group_name in (g[0], g[2])), None)
        if found is None and not group_name.isdigit():
            raise PyvmmError(f"unable to find group {group_name}: no matching entries in the "
                             "image's group file")  # fmt: skip
        return uid, _id(found[2] if found else group_name, "group"), []
    if entry is None or entry[0] != name:
        return uid, gid, []
    member = [_id(g[2], "group gid") for g in groups if len(g) > 3 and name in g[3].split(",")]
    return uid, gid, sorted(set(member) - {gid})


def for_image(lowers: list[Path], user: str) -> tuple[int, int, list[int]]:
    """``resolve`` against the files the image's layers (topmost first) show."""
    etc = [layers.read_file(lowers, ["etc", f], MAX_DATABASE) for f in ("passwd", "group")]
    return resolve(user, *etc)
