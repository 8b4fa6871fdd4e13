#!/usr/bin/env python3
"""Build the Linux guest for pyvmm once: the kernel (Debian's linux-source-6.1, tinyconfig
plus guest/linux/pyvmm.config and guest/linux/patches/) into a cache outside the
repository, and the initramfs (busybox, the workload, the exit helper) into guest/build.

    .venv/bin/python scripts/build_linux.py            # build what is missing, print paths
    .venv/bin/python scripts/build_linux.py --smp      # the SMP variant, for --cpus
    PYVMM_LINUX_CACHE=/somewhere scripts/build_linux.py

The kernel takes a few minutes on two CPUs (make -j2); later runs find it by a hash of
the configuration and patches. See docs/linux.md. The paths go to stdout, for
``K=$(scripts/build_linux.py | awk ...)``; the build's progress to stderr, where it is
seen meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmm.errors import PyvmmError  # noqa: E402
from vmm.guests import linux as linux_guest  # noqa: E402


def main() -> int:
    smp = sys.argv[1:] == ["--smp"]
    if sys.argv[1:] and not smp:
        print(f"build_linux: unknown arguments {sys.argv[1:]} (only --smp)", file=sys.stderr)
        return 2
    try:
        build = linux_guest.build_kernel(
            say=lambda m: print(m, file=sys.stderr, flush=True), smp=smp
        )
        initramfs = linux_guest.build_initramfs()
    except PyvmmError as e:
        print(f"build_linux: {e}", file=sys.stderr)
        return 2
    print(f"vmlinux    {build.vmlinux}")
    if not smp:
        print(f"unpatched  {build.vmlinux_unpatched}")
    print(f"bzImage    {build.bzimage}")
    print(f"initramfs  {initramfs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
