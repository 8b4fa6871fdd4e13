"""Lab 1's checks: the student's functions find a live VM's pieces in /proc and /sys.

Every answer is one the functions cannot know in advance: the RAM's size is drawn anew
at each check, a second VM with a vCPU of a drawn number sits beside the machine, and
the modules are asked for in mount namespaces of their own, where /proc and /sys/module
list made-up modules.
"""

import json
import os
import secrets
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, run_student, tail

TITLE = "Where KVM sits: a VM is a process"
CONCEPT = "type 1 and type 2; the kvm module, /dev/kvm, guest RAM in /proc/PID/maps"
NEEDS = ("kvm",)
FILES = ("where_kvm.py",)

# A pyvmm machine, built but not run, and the student's functions asked about this very
# process: the harness knows the true answers. argv: RAM size, the extra vCPU's number,
# then the /proc/modules text and the /sys/module entries of the two made-up hosts.
_HARNESS = """
import ctypes, json, os, sys
from vmm.guests import tiny as guest
from vmm.container.linux._libc import lib
from vmm.container.linux.libc import check, mount
from vmm.kvm import Kvm
from vmm.vm.machine import Machine, MachineConfig
import where_kvm

def ask(f, *args):
    try:
        return f(*args)
    except Exception as e:
        return f"{type(e).__name__}: {e}"

def own_mount_namespace():
    if lib.unshare(lib.CLONE_NEWNS) == 0:
        return
    uid, gid = os.getuid(), os.getgid()  # not root: a user namespace gives the right
    check(lib.unshare(lib.CLONE_NEWUSER | lib.CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)

def modules_on(proc_modules, sys_module):
    \"\"\"kvm_modules() in a child whose /proc holds only ``proc_modules`` (a text, or
    None for no file) and whose /sys/module holds only the ``sys_module`` folders.\"\"\"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            own_mount_namespace()
            mount(None, "/", None, lib.MS_REC | lib.MS_PRIVATE)
            for target in ("/proc", "/sys/module"):
                mount("tmpfs", target, "tmpfs", 0, "size=64k")
            if proc_modules is not None:
                with open("/proc/modules", "w") as f:
                    f.write(proc_modules)
            for name in sys_module:
                os.mkdir(f"/sys/module/{name}")
            answer = ask(where_kvm.kvm_modules)
        except BaseException as e:
            answer = f"the check could not set the scene: {e}"
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = json.loads(f.read() or "null")
    os.waitpid(pid, 0)
    return answer

size, extra = int(sys.argv[1]), int(sys.argv[2])
made_up = [modules_on(*json.loads(scene)) for scene in sys.argv[3:]]
with Machine(MachineConfig(guest.KVMHELLO_LAB, size)) as m:
    other = Kvm().create_vm()
    other.create_vcpu(extra)  # a second VM, with one vCPU of a number drawn by the check
    pid = os.getpid()
    run = ctypes.addressof(ctypes.c_char.from_buffer(m.vcpu._run_mm))
    files = ask(where_kvm.kvm_files, pid)
    print(json.dumps({
        "modules": ask(where_kvm.kvm_modules),
        "made_up": made_up,
        "memory": [ask(where_kvm.guest_memory, pid, size), m.memory.regions[0].host_address],
        "files": sorted(files) if isinstance(files, (set, list, tuple)) else files,
        "run": [ask(where_kvm.vcpu_run_page, pid), run],
    }))
"""


def _scenes() -> list[tuple[str | None, list[str], list[str]]]:
    """Two made-up hosts: (/proc/modules or None, /sys/module, the KVM modules there).
    One with loadable modules (/sys/module then differs: it must not be read), one whose
    kernel has none, so that /proc/modules is missing."""
    a, b = f"kvm_lab{secrets.token_hex(2)}", f"kvm_lab{secrets.token_hex(2)}"
    loaded = ["xfs", "kvm_intel", a, "virtio_kvm", "kvm"]
    proc = "".join(f"{m} 16384 0 - Live 0x0000000000000000\n" for m in loaded)
    return [
        (proc, ["kvm", "kvm_amd", "nfs"], sorted(["kvm", "kvm_intel", a])),
        (None, ["virtio_kvm", b, "kvm", "kvm_amd", "8250"], sorted(["kvm", "kvm_amd", b])),
    ]


def _answers(workdir: Path) -> dict:
    """The functions' answers about a machine of a size drawn now, with the truth."""
    from vmm.guests import tiny as guest

    guest.ensure_built(guest.KVMHELLO_LAB)
    size = (32 << 20) + (secrets.randbelow(9) << 22)  # 32 to 64 MiB, a multiple of 4 MiB
    extra = 1 + secrets.randbelow(7)
    scenes = _scenes()
    args = [str(size), str(extra), *(json.dumps(scene[:2]) for scene in scenes)]
    proc = run_student([sys.executable, "-c", _HARNESS, *args], workdir, timeout=30)
    try:
        got = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise CheckFailed(f"the functions could not be asked:\n{tail(proc)}") from None
    return {**got, "size": size, "extra": extra, "scenes": scenes}


def _loaded_kvm_modules() -> list[str]:
    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as f:
            return sorted(x.split()[0] for x in f if x.startswith("kvm"))
    return sorted(x for x in os.listdir("/sys/module") if x.startswith("kvm"))


def finds_the_modules(workdir: Path) -> str:
    answers = _answers(workdir)
    got, want = answers["modules"], _loaded_kvm_modules()
    if got != want:
        raise CheckFailed(f"kvm_modules() gave {got!r}; this host has {want}")
    for (proc, sys_module, right), said in zip(answers["scenes"], answers["made_up"], strict=True):
        if said != right:
            where = (
                f"/proc/modules listing {[line.split()[0] for line in proc.splitlines()]}"
                if proc
                else f"no /proc/modules, and /sys/module holding {sys_module}"
            )
            raise CheckFailed(f"on a host with {where}, kvm_modules() gave {said!r}, not {right}")
    return f"kvm_modules() = {got} here, and right on two made-up hosts"


def finds_guest_memory(workdir: Path) -> str:
    answers = _answers(workdir)
    got, want = answers["memory"]
    mib = answers["size"] >> 20
    if got != want:
        raise CheckFailed(f"guest_memory() gave {got!r}; the {mib} MiB of RAM are at {want:#x}")
    return f"{mib} MiB of guest RAM at {want:#x}"


def finds_kvm_files(workdir: Path) -> str:
    answers = _answers(workdir)
    got, extra = answers["files"], answers["extra"]
    want = sorted(
        ["/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0", f"anon_inode:kvm-vcpu:{extra}"]
    )
    if got != want:
        raise CheckFailed(
            f"kvm_files() gave {got!r}; the process holds {want} (two VMs, vCPUs 0 and {extra})"
        )
    return ", ".join(want)


def finds_kvm_run(workdir: Path) -> str:
    got, want = _answers(workdir)["run"]
    if got != want:
        raise CheckFailed(f"vcpu_run_page() gave {got!r}; struct kvm_run is at {want:#x}")
    return f"struct kvm_run shared at {want:#x}"


CHECKS = [
    Check(
        "kvm_modules() names the KVM modules",
        "/proc/modules if it exists (loadable modules), else the folders of /sys/module",
        finds_the_modules,
    ),
    Check(
        "guest_memory() finds the VM's RAM in /proc/PID/maps",
        "an anonymous mapping has 5 fields, no path; compare end - start with the size",
        finds_guest_memory,
    ),
    Check(
        "kvm_files() finds /dev/kvm, the VMs and their vCPUs",
        "os.readlink on each entry of /proc/PID/fd",
        finds_kvm_files,
    ),
    Check(
        "vcpu_run_page() finds struct kvm_run",
        "the mapping named anon_inode:kvm-vcpu:0 with 's' (shared) in its permissions",
        finds_kvm_run,
    ),
]
