"""The CPUID table each vCPU is given: KVM's supported leaves, with its own APIC id.

``KVM_GET_SUPPORTED_CPUID`` describes the host's CPU as KVM can virtualize it, once for
all vCPUs; the VMM must say which CPU each one is (api.rst, KVM_SET_CPUID2). KVM numbers
a vCPU's local APIC by the index it was created with, and the guest also reads that id
from CPUID: the initial APIC id in leaf 1 and the x2APIC id in leaves 0xB and 0x1F (SDM
vol. 2, CPUID). Linux compares the two when it brings a CPU up; the tiny kernel prints
one. QEMU, Firecracker and kvmtool patch the same fields.
"""

from __future__ import annotations

from vmm.kvm._kvm import ffi

CPUID_LEAF_FEATURES = 0x1  # EBX[31:24]: initial APIC id
CPUID_LEAF_TOPOLOGY = 0xB  # EDX: x2APIC id, every subleaf
CPUID_LEAF_TOPOLOGY_V2 = 0x1F  # the same, on newer CPUs
INITIAL_APIC_ID_SHIFT = 24


def for_vcpu(supported, apic_id: int):
    """A copy of ``supported`` (a ``struct kvm_cpuid2 *``) telling the guest it is
    the CPU with local APIC id ``apic_id``."""
    n = supported.nent
    table = ffi.new("struct kvm_cpuid2 *", {"entries": n})
    table.nent = n
    ffi.memmove(table.entries, supported.entries, n * ffi.sizeof("struct kvm_cpuid_entry2"))
    for i in range(n):
        entry = table.entries[i]
        if entry.function == CPUID_LEAF_FEATURES:
            entry.ebx = (entry.ebx & 0x00FF_FFFF) | (apic_id << INITIAL_APIC_ID_SHIFT)
        elif entry.function in (CPUID_LEAF_TOPOLOGY, CPUID_LEAF_TOPOLOGY_V2):
            entry.edx = apic_id
    return table
