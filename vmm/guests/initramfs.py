"""A busybox initramfs: the root file system a Linux kernel unpacks into RAM and runs
``/init`` from, before any disk driver is loaded.

It is a cpio archive in the "newc" format (Documentation/driver-api/early-userspace/
buffer-format.rst), optionally gzip'd. Two guests use one: the kernel built for pyvmm
(``vmm/guests/linux.py``: plain cpio, since under PVM a gzip'd one costs tens of seconds
to unpack in emulated ring 0) and the benchmark's reference Debian kernel
(``vmm/bench/linux_vm.py``: gzip'd, with the modules it needs).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from vmm.errors import PyvmmError

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static file, every command


def make(
    out: str,
    init: str,
    files: dict[str, str],
    dirs: tuple[str, ...] = (),
    gzip: bool = False,
    log: list[list[str]] | None = None,
) -> None:
    """Write ``out``: busybox as ``/bin/busybox`` and ``/bin/sh``, ``init`` as the
    ``/init`` script, ``files`` (path in the archive: host file) and empty ``dirs``.
    Members are sorted, so the same inputs give the same archive. ``log`` collects
    the shell command, for a benchmark's record of what it ran."""
    if not os.path.isfile(BUSYBOX):
        raise PyvmmError(
            f"{BUSYBOX} is missing: scripts/setup.sh --all installs it (busybox-static)"
        )
    tree = out + ".d"
    shutil.rmtree(tree, ignore_errors=True)
    try:
        for d in ("bin", *dirs):
            os.makedirs(os.path.join(tree, d), exist_ok=True)
        shutil.copy2(BUSYBOX, os.path.join(tree, "bin", "busybox"))
        os.symlink("busybox", os.path.join(tree, "bin", "sh"))
        for dest, src in files.items():
            os.makedirs(os.path.dirname(os.path.join(tree, dest)), exist_ok=True)
            shutil.copy2(src, os.path.join(tree, dest))
        with open(os.path.join(tree, "init"), "w") as f:
            f.write(init)
        os.chmod(os.path.join(tree, "init"), 0o755)
        pack = "find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet"
        pack += f" | gzip -9n > {out}.tmp" if gzip else f" > {out}.tmp"
        if log is not None:
            log.append(["sh", "-c", pack])
        proc = subprocess.run(["sh", "-c", pack], cwd=tree, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PyvmmError(f"making {out} failed: {proc.stderr.strip()[:200]}")
        os.rename(out + ".tmp", out)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
