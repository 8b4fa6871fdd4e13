"""Which KVM this host has: hardware, or PVM (a software KVM for nested guests).

Read from the kernel, never assumed: a Linux guest needs PVM's CPU feature masks on its
command line (``pyvmm boot``), and a benchmark figure means little without knowing
which one ran it (``vmm/bench/machineinfo.py`` records it beside every figure). Plain
os and file reads, no imports of weight: ``pyvmm boot`` asks this on every run of a
kernel of the user's.
"""

from __future__ import annotations

import os


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _kvm_modules(sys_module: str) -> tuple[set[str], str]:
    """KVM's modules that are loaded, and where that was read.

    /proc/modules lists loadable modules; built-in ones with parameters appear only
    under /sys/module; the kernel log says "kvm-pvm: loaded" even when neither does.
    """
    names = {"kvm_pvm", "kvm_intel", "kvm_amd"}
    found = names & set(os.listdir(sys_module)) if os.path.isdir(sys_module) else set()
    if found:
        return found, sys_module
    try:
        with open("/proc/modules") as f:
            found = names & {line.split()[0] for line in f if line.strip()}
        if found:
            return found, "/proc/modules"
    except OSError:
        pass
    import subprocess  # the last resort: not paid when /sys or /proc answers

    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        log = ""
    found = {n for n in names if f"{n.replace('_', '-')}: " in log}
    return found, "dmesg" if found else "nowhere"


def kvm_kind(sys_module: str = "/sys/module") -> dict:
    """Which KVM /dev/kvm is: 'pvm' (software, for nested guests), 'hardware', or 'none';
    the CPU's ``hypervisor`` flag says whether this host is itself a guest, i.e. whether
    any VM it runs is nested."""
    loaded, source = _kvm_modules(sys_module)
    if "kvm_pvm" in loaded:
        kind = "pvm"
    elif loaded:
        kind = "hardware"
    else:
        kind = "none"
    flags = _cpu_flags()
    return {
        "kind": kind,
        "modules": sorted(loaded),
        "read_from": source,
        "device": os.access("/dev/kvm", os.R_OK | os.W_OK),
        "nested": "hypervisor" in flags,
        "cpu_virtualization": sorted(flags & {"vmx", "svm"}),
    }
