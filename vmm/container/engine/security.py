"""A container's hardening, from Docker's options to what the runtime applies.

Docker's defaults, and the options that change them, turned into the runtime spec's
terms once, at create time, where every mistake is still a one-line error:

- capabilities (``--cap-add``, ``--cap-drop``; ``capabilities.py``) → ``process.capabilities``;
- the seccomp profile (``--security-opt seccomp=PROFILE.json|unconfined``; ``seccomp.py``)
  → ``linux.seccomp``, its capability conditions resolved against those capabilities;
- ``--ulimit`` (``rlimits.py``) → ``process.rlimits``;
- the device rules (``cgroups.DeviceRule``) → ``linux.resources.devices``: deny all,
  then allow the nodes of the minimal /dev that ``mounts.py`` creates, as Docker and
  runc allow theirs;
- ``--privileged`` lifts all of it: every capability, no filter, no device rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from vmm.container.linux import capabilities, seccomp
from vmm.container.linux.cgroups import DeviceRule
from vmm.container.linux.mounts import DEVICES
from vmm.container.linux.rlimits import Rlimit, from_ulimits
from vmm.errors import PyvmmError

UNCONFINED = "unconfined"
DEFAULT = "default"
PTY_MAJOR = 136  # devpts' /dev/pts/N (Documentation/admin-guide/devices.txt)
DEVICE_RULES = (
    DeviceRule(allow=False),  # deny everything, then allow:
    DeviceRule(True, "c", None, None, "m"),  # mknod of any node (CAP_MKNOD decides)
    DeviceRule(True, "b", None, None, "m"),
    *(DeviceRule(True, "c", major, minor, "rwm") for major, minor in DEVICES.values()),
    DeviceRule(True, "c", 5, 1, "rwm"),  # /dev/console
    DeviceRule(True, "c", 5, 2, "rwm"),  # /dev/ptmx and /dev/pts/ptmx
    DeviceRule(True, "c", PTY_MAJOR, None, "rwm"),
)


@dataclass
class Security:
    """How a container is confined, as recorded in its state and shown by inspect."""

    privileged: bool = False
    seccomp: str = DEFAULT  # DEFAULT, UNCONFINED, or the path of the profile given
    seccomp_profile: dict | None = None  # that profile's content, read at create
    capabilities: list[str] = field(default_factory=lambda: list(capabilities.DEFAULT))
    rlimits: list[Rlimit] = field(default_factory=list)

    def oci_capabilities(self) -> dict[str, list[str]]:
        return capabilities.oci_sets(self.capabilities)

    def oci_seccomp(self) -> dict | None:
        """The ``linux.seccomp`` object to install, or None for no filter."""
        if self.privileged or self.seccomp == UNCONFINED:
            return None
        if self.seccomp == DEFAULT:
            return seccomp.to_oci(seccomp.default_profile(), self.capabilities)
        return seccomp.to_oci(self.seccomp_profile, self.capabilities, self.seccomp)

    def device_rules(self) -> list[DeviceRule] | None:
        return None if self.privileged else list(DEVICE_RULES)

    def warnings(self, cgroup_version: str) -> list[str]:
        """What the user should know about this configuration, one line each."""
        if self.privileged:
            return [
                "--privileged: the container gets every capability, no seccomp filter and"
                " no device rules; root in it can take over the host"
            ]
        if cgroup_version == "v2" and "CAP_MKNOD" in self.capabilities:
            return [
                "CAP_MKNOD on cgroup v2: pyvmm enforces no device rules there, so the"
                " container can create and open any device node"
            ]
        return []


def from_options(privileged: bool = False, security_opts: Iterable[str] = (),
                 cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (),
                 ulimits: Iterable[str] = ()) -> Security:  # fmt: skip
    """Docker's ``--privileged``, ``--security-opt``, ``--cap-add``, ``--cap-drop`` and
    ``--ulimit``, checked (a custom profile is read and converted once, here)."""
    mode, profile = DEFAULT, None
    for opt in security_opts:
        key, sep, value = opt.partition("=")
        if key != "seccomp" or not sep or not value:
            raise PyvmmError(
                f"unsupported --security-opt {opt!r}:"
                " use seccomp=PROFILE.json or seccomp=unconfined"
            )
        mode = value if value == UNCONFINED else os.path.abspath(value)
        profile = None if value == UNCONFINED else seccomp.read_profile(value)
    caps = capabilities.tweak(capabilities.DEFAULT, cap_add, cap_drop, privileged)
    sec = Security(privileged, mode, profile, caps, from_ulimits(ulimits))
    sec.oci_seccomp()  # a profile that cannot be converted fails now, not at start
    return sec
