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

from vmm.kvm.kind import kvm_kind

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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
