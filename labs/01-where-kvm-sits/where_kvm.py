"""Lab 1: where KVM sits. A VM, seen from the host, is an ordinary process: find its
pieces with nothing but /proc and /sys.

Each function takes the PID of a running VMM (the check runs one, a pyvmm machine with
32 to 64 MiB of guest RAM) and reads the files the kernel keeps about that process.
"""

import os


def kvm_modules() -> list[str]:
    """The kernel's modules whose name starts with "kvm", sorted.

    /proc/modules lists the modules loaded into the kernel (one per line, the name
    first). A kernel built without loadable modules (CONFIG_MODULES off, like the one
    this course was written on) has no /proc/modules at all: its built-in parts show in
    /sys/module instead, one directory each (the check tries both kinds of host).
    """
    # >>> 1: read the module names from /proc/modules, or from os.listdir("/sys/module")
    # ... when /proc/modules does not exist, and keep those starting with "kvm"
    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as f:
            names = [line.split()[0] for line in f]
    else:
        names = os.listdir("/sys/module")
    return sorted(name for name in names if name.startswith("kvm"))
    # <<<


def guest_memory(pid: int, size: int) -> int:
    """The host address where the VM's RAM of ``size`` bytes is mapped in process ``pid``.

    Guest RAM is an anonymous private mapping (no file name in the last column) of
    exactly ``size`` bytes: KVM_SET_USER_MEMORY_REGION gave its address to KVM.
    """
    # >>> 1: read /proc/PID/maps: each line is "start-end perms offset dev inode [path]",
    # ... addresses in hex; return the start of the first mapping without a path whose
    # ... end - start is size (raise LookupError if there is none)
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if len(fields) == 5 and end - start == size:
                return start
    raise LookupError(f"no anonymous mapping of {size} bytes in process {pid}")
    # <<<


def kvm_files(pid: int) -> set[str]:
    """What the process holds open of KVM: /dev/kvm, the VM, each vCPU.

    Each is a file descriptor, /proc/PID/fd/N, a symlink whose target names it:
    "/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0" ...
    """
    # >>> 1: the targets (os.readlink) of the links in /proc/PID/fd that are /dev/kvm or
    # ... start with "anon_inode:kvm-", as a set (the same file may be open twice)
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target == "/dev/kvm" or target.startswith("anon_inode:kvm-"):
            found.add(target)
    return found
    # <<<


def vcpu_run_page(pid: int) -> int:
    """Where vCPU 0's ``struct kvm_run`` is mapped: the page the kernel and the VMM share,
    which KVM_RUN fills with the reason of each exit (api.rst, section 5)."""
    # >>> 1: in /proc/PID/maps, the start of the shared mapping (perms with "s") whose
    # ... path is anon_inode:kvm-vcpu:0
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if fields[-1] == "anon_inode:kvm-vcpu:0" and "s" in fields[1]:
                return int(fields[0].split("-")[0], 16)
    raise LookupError(f"process {pid} has not mapped a vCPU")
    # <<<
