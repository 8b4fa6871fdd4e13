"""A user (``-u``, an image's ``User``, a build's ``USER``) resolved as Docker and runc
resolve it (moby/sys/user ``GetExecUser``), against the container's own files."""

from __future__ import annotations

import os
import stat

import pytest

from vmm.container.engine.users import MAX_DATABASE, in_layers, resolve
from vmm.errors import PyvmmError

PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1001::/home/app:/bin/sh\nbad\n"
    b"broken:x:12:notanumber::/:/bin/sh\n1000:x:3000:3000::/:/bin/sh\n"
)
GROUP = b"root:x:0:\napp:x:1001:\nextra:x:2000:root,app\nmore:x:2001:app\nodd:x:?:app\n"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("app", (1000, 1001, [2000, 2001], "/home/app")),  # by name: its groups too
        ("1000", (1000, 1001, [2000, 2001], "/home/app")),  # a number is a uid, never a name
        ("4242", (4242, 0, [], "/")),  # a number passwd does not know: group 0
        ("app:extra", (1000, 2000, [], "/home/app")),  # a group given: that one alone
        ("app:77", (1000, 77, [], "/home/app")),
        ("4242:77", (4242, 77, [], "/")),
        ("root", (0, 0, [2000], "/root")),
    ],
)
def test_resolve(user, expected):
    u = resolve(user, PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == expected


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nosuch", "unable to find user nosuch"),
        ("broken", "unable to find user broken"),  # its line does not parse: skipped
        ("app:nosuch", "unable to find group nosuch"),
        ("app:odd", "unable to find group odd"),
        ("99999999999", "out of range"),
        ("0:2147483648", "out of range"),
        ("app:", "invalid user"),
        (":0", "invalid user"),
    ],
)
def test_resolve_refuses(user, message):
    with pytest.raises(PyvmmError, match=message):
        resolve(user, PASSWD, GROUP)


def test_an_image_without_passwd_takes_numbers_only():
    u = resolve("5:6", None, None)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (5, 6, [], "/")
    with pytest.raises(PyvmmError):
        resolve("app", None, None)


def _etc(layer, **files):
    (layer / "etc").mkdir(parents=True)
    for name, text in files.items():
        (layer / "etc" / name).write_text(text)
    return layer


def test_the_files_are_those_the_overlay_shows_topmost_first(tmp_path):
    lower = _etc(tmp_path / "lower", passwd="alice:x:1000:1000::/home/alice:/bin/sh\n")
    upper = _etc(tmp_path / "upper", passwd="bob:x:2000:2000::/home/bob:/bin/sh\n",
                 group="team:x:3000:bob\n")  # fmt: skip
    assert in_layers([upper, lower], "bob").additional_gids == [3000]
    with pytest.raises(PyvmmError, match="unable to find user alice"):
        in_layers([upper, lower], "alice")
    assert in_layers([lower], "alice").uid == 1000


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a whiteout")
def test_a_whiteout_hides_the_image_passwd(tmp_path):
    lower = _etc(tmp_path / "lower", passwd="alice:x:1000:1000::/home/alice:/bin/sh\n")
    upper = _etc(tmp_path / "upper")
    os.mknod(upper / "etc" / "passwd", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    with pytest.raises(PyvmmError, match="unable to find user alice"):
        in_layers([upper, lower], "alice")
    assert in_layers([upper, lower], "1000").gid == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda etc: (etc / "passwd").symlink_to("/etc/passwd"), "is a symbolic link"),
        (lambda etc: (etc / "passwd").mkdir(), "is not a regular file"),
        (lambda etc: (etc / "passwd").write_bytes(b"#" * (MAX_DATABASE + 1)), "larger than"),
    ],
)
def test_a_passwd_that_is_no_bounded_regular_file_is_refused(tmp_path, make, message):
    layer = _etc(tmp_path / "layer")
    make(layer / "etc")
    with pytest.raises(PyvmmError, match=message):
        in_layers([layer], "0")
