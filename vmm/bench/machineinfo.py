"""What machine a benchmark ran on, recorded beside every figure.

A VM-versus-container figure means little without the machine behind it: the same
pyvmm boot costs microseconds per exit on hardware KVM and several times that under
PVM, a software KVM for nested guests. So the kind of KVM is read from the kernel, not
assumed, and the result travels with the numbers into the JSON and the report.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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


def pyvmm_version() -> str:
    """The installed version, and the commit of the checkout when there is one."""
    version = metadata.version("pyvmm")
    try:
        commit = subprocess.run(
            ["git", "-C", REPO, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{version} ({commit})" if commit else version


def describe() -> dict:
    uname = os.uname()
    return {
        "hostname": uname.nodename,
        "machine": uname.machine,
        "kernel": f"{uname.sysname} {uname.release} {uname.version}",
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "kvm": kvm_kind(),
        "python": platform.python_version(),
        # Other work on the machine moves every figure: say how busy it was.
        "load_average": os.getloadavg(),
        "pyvmm": pyvmm_version(),
    }
