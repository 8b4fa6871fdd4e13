"""Image store → OCI bundle: what ``pyvmm container`` hands the OCI core.

A pyvmm container's directory is a bundle: ``config.json``, written at create from
the image's config and the command-line flags (``config``), and ``merged``, its
rootfs. That rootfs is the overlay of the image layers (read-only, topmost first)
and the container's writable ``upper`` layer. containerd mounts such an overlay on
the host before it calls runc; pyvmm mounts it inside the container's own mount
namespace (``overlay``, which the core calls once mounts can no longer reach the
host), so a killed pyvmm leaves no mount behind and nothing needs unmounting.

The same directory, with the overlay mounted by hand, runs under ``pyvmm-runtime``:
see docs/containers.md, "the same container three ways".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vmm.container.engine import users, volumes
from vmm.container.engine.record import ContainerRecord
from vmm.container.linux import cgroups, inroot, mounts
from vmm.container.linux.atomic import write_json
from vmm.container.oci import spec
from vmm.container.store import layers, records
from vmm.container.store.state import Store
from vmm.errors import PyvmmError

# What Docker and runc mount for every container (runc's `spec` default): /proc, a
# small /dev, a private devpts, /dev/shm, sysfs read-only.
SYSTEM_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "nodev", "noexec"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "noexec", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "nodev", "noexec", "ro"]},
]  # fmt: skip


def directory(store: Store, rec: ContainerRecord) -> str:
    return str(store.containers / rec.id)


# --init's PID 1 (reaper.c, built by setup.py): copied into each container's directory
# (a privileged container that remounts it writable reaches only its own copy) and
# bound read-only where the command line finds it.
INIT = Path(__file__).resolve().parents[1] / "linux" / "pyvmm-init"
INIT_TARGET = "/sbin/pyvmm-init"


def install_init(store: Store, rec: ContainerRecord) -> None:
    """The container's own copy of ``INIT`` (mode 0555), for ``--init``."""
    import shutil

    dest = store.containers / rec.id / "init"
    try:
        shutil.copyfile(INIT, dest, follow_symlinks=False)
    except FileNotFoundError:
        raise PyvmmError(f"--init: {INIT} is missing (run scripts/setup.sh)") from None
    os.chmod(dest, 0o555)


def process_user(store: Store, rec: ContainerRecord, spec_: str, env: list[str]) -> dict:
    """config.md's ``user`` for ``spec_`` (``-u``, or the image's ``User``; root if
    none), resolved in the container's own ``/etc/passwd`` and ``/etc/group`` as its
    writable layer over its image's has them now; and ``HOME`` added to ``env`` from
    the user's entry, as runc does when the environment has none."""
    if not spec_:
        return {"uid": 0, "gid": 0}
    tops = [store.containers / rec.id / "upper"]
    tops += [layers.layer_dir(store, d) for d in reversed(rec.layers)]
    user = users.in_layers(tops, spec_)
    if not any(item.startswith("HOME=") for item in env):
        env.append(f"HOME={user.home}")
    return {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids}


def config(store: Store, rec: ContainerRecord) -> dict:
    """The container's ``config.json``: the image's defaults and the flags, recorded
    in ``rec`` at create, in the runtime spec's terms."""
    security = rec.security
    binds = []
    for m in rec.mounts:
        source = volumes.data_dir(store, m.source) if m.type == "volume" else m.source
        options = ["rbind", "ro" if m.ro else "rw"]
        binds.append({"destination": m.target, "type": "bind", "source": source,
                      "options": options})  # fmt: skip
    if rec.init:
        binds.append({"destination": INIT_TARGET, "type": "bind",
                      "source": f"{directory(store, rec)}/init",
                      "options": ["bind", "ro"]})  # fmt: skip
    for t in rec.tmpfs:
        binds.append({"destination": t.target, "type": "tmpfs", "source": "tmpfs",
                      "options": t.options})  # fmt: skip
    resources, limits = {}, rec.limits
    if limits.memory is not None:
        resources["memory"] = {"limit": limits.memory, "swap": limits.memory}
    if limits.pids is not None:
        resources["pids"] = {"limit": limits.pids}
    if limits.cpus is not None:
        period = cgroups.CFS_PERIOD_US
        resources["cpu"] = {"quota": int(limits.cpus * period), "period": period}
    if limits.devices is not None:
        resources["devices"] = [
            {k: v for k, v in records.to_json(d).items() if v is not None} for d in limits.devices
        ]
    # The network's: a new one, or with --network (container/network.py, imported
    # only then) the one pyvmm made for the container, by its path, or none (host).
    net, etc = {"type": "network"}, []
    if (store.endpoints / rec.id).exists():
        from vmm.container.engine import network

        net, etc = network.namespace(store, rec.id), network.binds(store, rec.id)
    linux = {
        "namespaces": [
            *({"type": t} for t in ("pid", "mount", "uts", "ipc")),
            *([net] if net else []),
            {"type": "cgroup"},
        ],  # fmt: skip
        "maskedPaths": list(spec.MASKED_PATHS),
        "readonlyPaths": list(spec.READONLY_PATHS),
        "resources": resources,
        "cgroupsPath": f"/{store.cgroup_parent}/{rec.id}",
    }
    seccomp = security.oci_seccomp()
    if seccomp is not None:
        linux["seccomp"] = seccomp
    env = list(rec.env)
    user = process_user(store, rec, rec.user, env)
    return {
        "ociVersion": spec.OCI_VERSION,
        "process": {
            "args": [INIT_TARGET, "--", *rec.command] if rec.init else rec.command,
            "env": env,
            "cwd": rec.cwd,
            "terminal": rec.tty,
            "user": user,
            "capabilities": security.oci_capabilities(),
            "rlimits": [vars(r) for r in security.rlimits],
            "noNewPrivileges": True,
        },
        "root": {"path": "merged", "readonly": rec.read_only},
        "hostname": rec.hostname,
        "mounts": [*SYSTEM_MOUNTS, *etc, *binds],
        "annotations": {"org.pyvmm.image": rec.image, "org.pyvmm.name": rec.name},
        "linux": linux,
    }


def write(store: Store, rec: ContainerRecord) -> None:
    write_json(store.containers / rec.id / "config.json", config(store, rec))


def ensure(store: Store, rec: ContainerRecord) -> str:
    """The bundle's directory, its config.json written now if the container predates
    bundles."""
    if not os.path.exists(os.path.join(directory(store, rec), "config.json")):
        write(store, rec)
    return directory(store, rec)


def mount_image(store: Store, rec: ContainerRecord, rootfs: str) -> None:
    """The container's writable layer over its image's layers, mounted on ``rootfs``
    (in a mount namespace of the caller's: ``overlay``, ``cp``)."""
    cdir = directory(store, rec)
    lowers = [str(layers.layer_dir(store, d)) for d in reversed(rec.layers)]
    mounts.mount_overlay(rootfs, lowers, f"{cdir}/upper", f"{cdir}/work")


def overlay(store: Store, rec: ContainerRecord) -> Callable[[str], None]:
    """The rootfs step (``init.mount_rootfs``'s ``on_rootfs``): mount the image's
    overlay on ``merged``, and fill new volumes from the image's content."""

    def mount_it(rootfs: str) -> None:
        mount_image(store, rec, rootfs)
        for m in rec.mounts:
            if m.type == "volume":
                with inroot.target(rootfs, m.target) as target:
                    volumes.populate(store, m.source, target)

    return mount_it
