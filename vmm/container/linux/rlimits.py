"""Resource limits (setrlimit): per-process ceilings such as open files or core size.

Unlike a cgroup's limits, which count the container as a whole, an rlimit is
per process, inherited across fork and execve. Docker sets none by default (its
containers inherit dockerd's), and so pyvmm's inherit pyvmm's; ``--ulimit
nofile=1024:2048`` sets one, in Docker's syntax. The runtime spec's form is
``process.rlimits``: ``[{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]``,
applied by the container's first process before it drops CAP_SYS_RESOURCE (needed
to raise a hard limit).
"""

from __future__ import annotations

import resource
from collections.abc import Iterable
from dataclasses import dataclass

from vmm.errors import PyvmmError

UNLIMITED = (1 << 64) - 1  # RLIM_INFINITY as the spec's uint64 (Docker's -1)
# Docker's --ulimit names (docker/go-units ulimit.go; "as" it leaves out, as do we).
ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")  # fmt: skip


class RlimitError(PyvmmError):
    """A malformed --ulimit or rlimit."""


@dataclass(frozen=True)
class Rlimit:
    """One OCI ``process.rlimits`` entry; UNLIMITED means no limit."""

    type: str  # "RLIMIT_NOFILE"
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if not isinstance(getattr(resource, self.type, None), int):
            raise RlimitError(f"unknown rlimit type {self.type!r}")
        for v in (self.soft, self.hard):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= UNLIMITED:
                raise RlimitError(f"{self.type}: limits must be numbers from 0 to 2^64-1")
        if self.soft > self.hard:
            raise RlimitError(f"{self.type}: soft limit {self.soft} above hard {self.hard}")

    def apply(self) -> None:
        """setrlimit in the calling process."""
        value = [resource.RLIM_INFINITY if v == UNLIMITED else v for v in (self.soft, self.hard)]
        try:
            resource.setrlimit(getattr(resource, self.type), tuple(value))
        except (OSError, ValueError, OverflowError) as e:
            raise RlimitError(f"cannot set {self.type} to {self.soft}:{self.hard}: {e}") from None


def parse_ulimit(text: str) -> Rlimit:
    """Docker's ``--ulimit NAME=SOFT[:HARD]`` (-1: unlimited; HARD defaults to SOFT)."""
    name, sep, values = text.partition("=")
    if not sep or name not in ULIMITS:
        raise RlimitError(
            f"bad --ulimit {text!r}: use NAME=SOFT[:HARD], NAME one of {', '.join(ULIMITS)}"
        )
    parts = values.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 2 or any(n < -1 for n in numbers):
        raise RlimitError(f"bad --ulimit {text!r}: limits are numbers (or -1, unlimited)")
    soft, hard = (UNLIMITED if n == -1 else n for n in (numbers * 2)[:2])
    return Rlimit(f"RLIMIT_{name.upper()}", soft, hard)


def from_ulimits(texts: Iterable[str]) -> list[Rlimit]:
    """Every ``--ulimit``, the last one for a name winning, as in Docker."""
    by_type = {r.type: r for r in map(parse_ulimit, texts)}
    return list(by_type.values())
