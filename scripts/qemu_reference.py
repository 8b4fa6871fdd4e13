#!/usr/bin/env python3
"""The full-Linux-VM reference row on its own: boot Debian's cloud kernel with a busybox
initramfs under QEMU on a workload image, print what the guest printed, and say how.

Fetches and builds what it needs the first time (``apt-get download`` of the kernel
package, ``dpkg-deb -x``, an initramfs made with cpio; QEMU itself from Debian if it
is missing) into ~/.cache/pyvmm/linux-vm; ``pyvmm bench`` uses the same code
(vmm/bench/linux_vm.py) for its "Linux VM" row.

    .venv/bin/python scripts/qemu_reference.py IMAGE [--timeout 600] [--print-command]

KVM is used where it is hardware virtualization; under PVM, QEMU emulates the CPU
(TCG), which is much slower: the output says which.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmm.bench import linux_vm  # noqa: E402
from vmm.errors import PyvmmError  # noqa: E402
from vmm.guests import tiny as guest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="a workload image (scripts/mkimage.py)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before QEMU is killed")
    parser.add_argument("--print-command", action="store_true", help="print the command only")
    args = parser.parse_args(argv)
    steps: list[list[str]] = []
    try:
        guest.ensure_built(guest.WORKLOAD)
        vm = linux_vm.prepare(guest.WORKLOAD, steps)
    except PyvmmError as e:
        print(f"qemu_reference: {e}", file=sys.stderr)
        return 2
    finally:
        for step in steps:
            print(f"prepared: {shlex.join(step)}", file=sys.stderr)
    command = linux_vm.command(vm, args.image)
    print(f"{vm.package}, accelerator {vm.accel}: {shlex.join(command)}", file=sys.stderr)
    if args.print_command:
        print(shlex.join(command))
        return 0
    t = time.perf_counter()
    try:
        proc = subprocess.run(command, stdout=sys.stdout, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"qemu_reference: no power-off within {args.timeout:.0f} s", file=sys.stderr)
        return 124
    print(f"qemu exited {proc.returncode} after {time.perf_counter() - t:.2f} s", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
