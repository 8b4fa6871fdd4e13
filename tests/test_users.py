"""An image's ``User`` resolved as Docker resolves it, against the image's own files."""

from __future__ import annotations

import pytest

from vmm.container.users import resolve
from vmm.errors import PyvmmError

PASSWD = b"root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1001::/home/app:/bin/sh\nbad\n"
GROUP = b"root:x:0:\napp:x:1001:\nextra:x:2000:root,app\nmore:x:2001:app\n"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("app", (1000, 1001, [2000, 2001])),  # by name: its groups too
        ("1000", (1000, 1001, [])),  # by number found in passwd: its gid, no groups
        ("4242", (4242, 0, [])),  # a number passwd does not know: group 0
        ("app:extra", (1000, 2000, [])),  # a group given: that one alone
        ("4242:77", (4242, 77, [])),
        ("root", (0, 0, [2000])),
    ],
)
def test_resolve(user, expected):
    assert resolve(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nosuch", "unable to find user nosuch"),
        ("app:nosuch", "unable to find group nosuch"),
        ("99999999999", "is not a number"),
    ],
)
def test_resolve_refuses(user, message):
    with pytest.raises(PyvmmError, match=message):
        resolve(user, PASSWD, GROUP)


def test_an_image_without_passwd_takes_numbers_only():
    assert resolve("5:6", None, None) == (5, 6, [])
    with pytest.raises(PyvmmError):
        resolve("app", None, None)
