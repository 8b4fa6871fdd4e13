"""Image references as Docker reads them: ``[REGISTRY/]PATH[:TAG][@DIGEST]``.

The grammar is the distribution project's ``reference/regexp.go``; the defaults are
Docker's ``ParseNormalizedNamed``: a first component is a registry only if it has a
``.`` or a ``:`` or is ``localhost``, else the registry is Docker Hub and a one-part
path is an official image under ``library/``; with neither tag nor digest the tag is
``latest``. A reference is checked whole before any part of it becomes a URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmm.container.image.imagespec import check_digest
from vmm.errors import PyvmmError

# reference/regexp.go: a path component, a domain, a tag.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
# reference/reference.go NameTotalLengthMax.
MAX_NAME = 255
# Docker Hub: the name references use, and the host that serves its API.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Reference:
    """A parsed reference: the registry (as named), the repository path, and the tag
    or digest that picks the manifest (a digest wins where both are given, as in Docker)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        """The host:port serving the registry's API."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest(self) -> str:
        """What goes after ``/manifests/``: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else ""
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.registry}/{self.repository}{tag}{at}"


def parse(ref: str) -> Reference:
    """``ref`` checked and normalised as Docker does; one line if it is not a reference."""
    name, at, digest = ref.partition("@")
    if at:
        check_digest(digest, f"reference {ref!r}")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise PyvmmError(f"reference {ref!r}: invalid tag {tag!r}")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise PyvmmError(f"reference {ref!r}: invalid registry {first!r}")
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    if registry in ("index.docker.io", DOCKER_HUB):
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not path or not all(_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise PyvmmError(
            f"invalid reference {ref!r}: a repository path is lowercase letters, digits "
            "and separators ('.', '_', '-', '/')"
        )
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise PyvmmError(f"reference {ref[:40]!r}...: name longer than {MAX_NAME} characters")
    return Reference(registry, path, tag if tag or digest else "latest", digest or None)
