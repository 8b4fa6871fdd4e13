"""Image references read as Docker reads them (distribution's reference package):
Docker Hub's defaults, what makes a first component a registry, tags and digests."""

from __future__ import annotations

import pytest

from vmm.container.image.reference import Reference, parse
from vmm.errors import PyvmmError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("library/busybox:1.36", Reference("docker.io", "library/busybox", "1.36", None)),
        ("index.docker.io/busybox", Reference("docker.io", "library/busybox", "latest", None)),
        ("user/app", Reference("docker.io", "user/app", "latest", None)),
        ("localhost/app", Reference("localhost", "app", "latest", None)),
        ("localhost:5000/a/b:v1", Reference("localhost:5000", "a/b", "v1", None)),
        ("ghcr.io/o/r@" + D, Reference("ghcr.io", "o/r", None, D)),
        ("127.0.0.1:5000/r:t@" + D, Reference("127.0.0.1:5000", "r", "t", D)),
        ("[::1]:5000/r", Reference("[::1]:5000", "r", "latest", None)),
    ],
)
def test_parse_normalises_as_docker(text, want):
    ref = parse(text)
    assert ref == want
    assert ref.manifest == (want.digest or want.tag)


def test_docker_hub_is_served_by_its_api_host():
    assert parse("busybox").host == "registry-1.docker.io"
    assert parse("localhost:5000/x").host == "localhost:5000"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Busybox", "invalid reference"),
        ("a//b", "invalid reference"),
        ("a/b:", "invalid tag"),
        ("a:" + "t" * 129, "invalid tag"),
        ("a@sha256:xyz", "not a sha256 digest"),
        ("a@md5:" + "0" * 32, "unsupported digest algorithm"),
        ("host.io/", "invalid reference"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_bad_references_are_one_line_errors(text, fragment):
    with pytest.raises(PyvmmError, match=fragment):
        parse(text)
