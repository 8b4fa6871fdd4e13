"""Lab 1's checks: the student's functions find a live VM's pieces in /proc and /sys."""

import json
import os
import sys
from pathlib import Path

from vmm.lab import Check, CheckFailed, run_student, tail

TITLE = "Where KVM sits: a VM is a process"
CONCEPT = "type 1 and type 2; the kvm module, /dev/kvm, guest RAM in /proc/PID/maps"
NEEDS = ("kvm",)
FILES = ("where_kvm.py",)

# A pyvmm machine with 48 MiB of RAM, built but not run, and the student's functions
# asked about this very process: the harness knows the true answers.
_HARNESS = """
import ctypes, json, os, sys
from vmm import guest
from vmm.machine import Machine, MachineConfig
import where_kvm

def ask(f, *args):
    try:
        return f(*args)
    except Exception as e:
        return f"{type(e).__name__}: {e}"

with Machine(MachineConfig(guest.KVMHELLO_LAB, 48 << 20)) as m:
    pid = os.getpid()
    run = ctypes.addressof(ctypes.c_char.from_buffer(m.vcpu._run_mm))
    print(json.dumps({
        "modules": ask(where_kvm.kvm_modules),
        "memory": [ask(where_kvm.guest_memory, pid, 48 << 20), m.memory.regions[0].host_address],
        "files": sorted(ask(where_kvm.kvm_files, pid)),
        "run": [ask(where_kvm.vcpu_run_page, pid), run],
    }))
"""


def _answers(workdir: Path) -> dict:
    from vmm import guest

    guest.ensure_built(guest.KVMHELLO_LAB)
    proc = run_student([sys.executable, "-c", _HARNESS], workdir, timeout=30)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(f"the functions could not be asked:\n{tail(proc)}") from None


def _loaded_kvm_modules() -> list[str]:
    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as f:
            return sorted(x.split()[0] for x in f if x.startswith("kvm"))
    return sorted(x for x in os.listdir("/sys/module") if x.startswith("kvm"))


def finds_the_modules(workdir: Path) -> str:
    got, want = _answers(workdir)["modules"], _loaded_kvm_modules()
    if got != want:
        raise CheckFailed(f"kvm_modules() gave {got!r}; this host has {want}")
    return f"kvm_modules() = {got}"


def finds_guest_memory(workdir: Path) -> str:
    got, want = _answers(workdir)["memory"]
    if got != want:
        raise CheckFailed(f"guest_memory() gave {got!r}; the 48 MiB of RAM are at {want:#x}")
    return f"48 MiB of guest RAM at {want:#x}"


def finds_kvm_files(workdir: Path) -> str:
    got = _answers(workdir)["files"]
    want = ["/dev/kvm", "anon_inode:kvm-vcpu:0", "anon_inode:kvm-vm"]
    if got != want:
        raise CheckFailed(f"kvm_files() gave {got!r}; the VMM holds {want}")
    return ", ".join(want)


def finds_kvm_run(workdir: Path) -> str:
    got, want = _answers(workdir)["run"]
    if got != want:
        raise CheckFailed(f"vcpu_run_page() gave {got!r}; struct kvm_run is at {want:#x}")
    return f"struct kvm_run shared at {want:#x}"


CHECKS = [
    Check(
        "kvm_modules() names the KVM modules", "/proc/modules, else /sys/module", finds_the_modules
    ),
    Check(
        "guest_memory() finds the VM's RAM in /proc/PID/maps",
        "an anonymous mapping has 5 fields, no path; compare end - start with the size",
        finds_guest_memory,
    ),
    Check(
        "kvm_files() finds /dev/kvm, the VM and its vCPU",
        "os.readlink on each entry of /proc/PID/fd",
        finds_kvm_files,
    ),
    Check(
        "vcpu_run_page() finds struct kvm_run",
        "the mapping named anon_inode:kvm-vcpu:0 with 's' (shared) in its permissions",
        finds_kvm_run,
    ),
]
