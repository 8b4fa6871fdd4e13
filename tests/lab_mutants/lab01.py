"""Wrong answers for lab 1: what this host shows, written down instead of looked up."""

from labmutant import Mutant

_MODULES = """    if os.path.exists("/proc/modules"):
        with open("/proc/modules") as f:
            names = [line.split()[0] for line in f]
    else:
        names = os.listdir("/sys/module")
"""

MUTANTS = [
    Mutant(
        "a hard-coded module list",
        "where_kvm.py",
        "on a host with",
        edits=((_MODULES, '    names = ["kvm", "kvm_pvm"]\n'),),
    ),
    Mutant(
        "/sys/module only, never /proc/modules",
        "where_kvm.py",
        "/proc/modules listing",
        edits=((_MODULES, '    names = os.listdir("/sys/module")\n'),),
    ),
    Mutant(
        "a hard-coded set of KVM files",
        "where_kvm.py",
        "vCPUs 0 and",
        edits=(
            (
                "    found = set()\n",
                '    return {"/dev/kvm", "anon_inode:kvm-vm", "anon_inode:kvm-vcpu:0"}\n'
                "    found = set()\n",
            ),
        ),
    ),
]
