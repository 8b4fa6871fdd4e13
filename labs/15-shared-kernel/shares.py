"""Lab 15: what a container shares with its host, and what a VM does not.

Usage: python shares.py   (as root; PYVMM_ROOT names a state root holding the busybox
image: python scripts/build_images.py)

Prints, as JSON, five facts seen from the host, from inside a pyvmm container and from
inside pyvmm's tiny VM, and for the container which of them are the host's own:

- "release": the kernel release, ``uname -r``
- "boot_id": the sysctl kernel.random.boot_id, new at every boot of a kernel
- "hostname"
- "keys": how many lines /proc/keys has (the kernel's keyrings visible to the caller)
- "modules": how many entries /sys/module has (the kernel's modules and built-ins)

and under "shared", fact by fact, whether the container's value is the host's.
"""

import json
import subprocess
import sys

FACTS = ("release", "boot_id", "hostname", "keys", "modules")
# One shell line that prints the five facts, one per line, in FACTS' order.
PROBE = (
    "uname -r; cat /proc/sys/kernel/random/boot_id; hostname; "
    "cat /proc/keys 2>/dev/null | wc -l; ls /sys/module 2>/dev/null | wc -l"
)
PYVMM = [sys.executable, "-m", "vmm"]


def host_facts() -> dict[str, str]:
    # >>> 15: run PROBE on the host (subprocess.run(["sh", "-c", PROBE], ...)) and pair
    # ... its output lines with FACTS
    out = subprocess.run(["sh", "-c", PROBE], capture_output=True, text=True, check=True)
    return dict(zip(FACTS, out.stdout.split(), strict=True))
    # <<<


def container_facts() -> dict[str, str]:
    # >>> 15: the same PROBE inside a container: PYVMM + ["container", "run", "--rm",
    # ... "busybox", "sh", "-c", PROBE]
    cmd = [*PYVMM, "container", "run", "--rm", "busybox", "sh", "-c", PROBE]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(zip(FACTS, out.stdout.split(), strict=True))
    # <<<


def vm_kernel() -> str:
    """The tiny VM's kernel has no uname, /proc or /sys: a VM runs a kernel of its own,
    and this one says which on its first line, before the colon."""
    # >>> 15: boot the tiny VM (PYVMM + ["boot"]) and return its first line up to ":"
    out = subprocess.run([*PYVMM, "boot"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].split(":")[0]
    # <<<


def shared(host: dict[str, str], container: dict[str, str]) -> dict[str, bool]:
    """The report's "shared": which facts the container sees exactly as the host does."""
    # >>> 15: for each fact of FACTS, True when the container's value is the host's
    return {fact: host[fact] == container[fact] for fact in FACTS}
    # <<<


def main() -> None:
    host, container = host_facts(), container_facts()
    report = {
        "host": host,
        "container": container,
        "shared": shared(host, container),
        "vm_kernel": vm_kernel(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
