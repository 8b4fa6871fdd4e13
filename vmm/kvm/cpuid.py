"""The CPUID table each vCPU is given: KVM's supported leaves, with its own APIC id.

``KVM_GET_SUPPORTED_CPUID`` describes the host's CPU as KVM can virtualize it, once for
all vCPUs; the VMM must say which CPU each one is (api.rst, KVM_SET_CPUID2). KVM numbers
a vCPU's local APIC by the index it was created with, and the guest also reads that id
from CPUID: the initial APIC id in leaf 1 and the x2APIC id in leaves 0xB and 0x1F (SDM
vol. 2, CPUID). Linux compares the two when it brings a CPU up; the tiny kernel prints
one. QEMU, Firecracker and kvmtool patch the same fields.

Under PVM the table also leaves out KVM's paravirtual features that a guest uses through
the VMCALL hypercall between CPUs: PV_SEND_IPI (an IPI to a CPU set), PV_UNHALT (waking
a CPU halted on a spinlock) and PV_SCHED_YIELD. Measured with Linux and --cpus 2: the
second CPU came up to 64-bit Linux and then re-executed its ``vmcall`` in
``kvm_hypercall4`` (``__send_ipi_mask``) forever, so the boot CPU waited for it in vain.
Without them Linux sends IPIs through the local APIC, as QEMU's default CPU model has it
do (it does not offer these three either). Linux uses none of them with one CPU.
"""

from __future__ import annotations

from vmm.kvm._kvm import ffi, lib

CPUID_LEAF_FEATURES = 0x1  # EBX[31:24]: initial APIC id
CPUID_LEAF_TOPOLOGY = 0xB  # EDX: x2APIC id, every subleaf
CPUID_LEAF_TOPOLOGY_V2 = 0x1F  # the same, on newer CPUs
INITIAL_APIC_ID_SHIFT = 24


# KVM_CPUID_FEATURES bits of the hypercalls between CPUs (above), dropped under PVM.
CROSS_CPU_HYPERCALLS = (
    (1 << lib.KVM_FEATURE_PV_SEND_IPI)
    | (1 << lib.KVM_FEATURE_PV_UNHALT)
    | (1 << lib.KVM_FEATURE_PV_SCHED_YIELD)
)


def for_vcpu(supported, apic_id: int, pvm: bool = False):
    """A copy of ``supported`` (a ``struct kvm_cpuid2 *``) telling the guest it is
    the CPU with local APIC id ``apic_id``; under ``pvm``, without the hypercalls
    between CPUs.

    The entries are patched as 32-bit words through a buffer, at offsets the compiler
    gave: cffi's attribute access per entry cost 0.6 ms a vCPU, a third of the time
    from VM creation to the tiny kernel's first byte."""
    n = supported.nent
    table = ffi.new("struct kvm_cpuid2 *", {"entries": n})
    table.nent = n
    ffi.memmove(table.entries, supported.entries, n * _ENTRY_SIZE)
    words = memoryview(ffi.buffer(table.entries, n * _ENTRY_SIZE)).cast("I")
    for entry in range(0, n * _ENTRY_WORDS, _ENTRY_WORDS):
        function = words[entry + _FUNCTION]
        if function == CPUID_LEAF_FEATURES:
            ebx = entry + _EBX
            words[ebx] = (words[ebx] & 0x00FF_FFFF) | (apic_id << INITIAL_APIC_ID_SHIFT)
        elif function in (CPUID_LEAF_TOPOLOGY, CPUID_LEAF_TOPOLOGY_V2):
            words[entry + _EDX] = apic_id
        elif function == lib.KVM_CPUID_FEATURES and pvm:
            words[entry + _EAX] &= ~CROSS_CPU_HYPERCALLS
    words.release()
    return table


_ENTRY_SIZE = ffi.sizeof("struct kvm_cpuid_entry2")
_ENTRY_WORDS = _ENTRY_SIZE // 4
_FUNCTION, _EAX, _EBX, _EDX = (
    ffi.offsetof("struct kvm_cpuid_entry2", field) // 4
    for field in ("function", "eax", "ebx", "edx")
)
