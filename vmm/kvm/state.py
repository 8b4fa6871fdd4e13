"""A VM's and a vCPU's state as KVM holds it, read out and written back (api.rst, 4.x).

A snapshot or a migration needs every piece of state the kernel keeps for a guest: a
vCPU's registers, FPU/XSAVE and XCRs, MSRs, local APIC, pending events, MP state and
debug registers; the VM's PIC, IOAPIC, PIT and clock. Each is one ``KVM_GET_*`` ioctl
filling a kernel struct, and the matching ``KVM_SET_*`` puts it back. pyvmm keeps the
structs as their bytes (sizes from the compiler, through cffi) and names the general
registers only, which a person may want to read and change (docs/state.md); the rest
is the kernel's business, as in Firecracker's and QEMU's snapshots.

A piece the host's KVM does not offer (a capability it lacks) is simply absent from
what ``vcpu_parts`` and ``vm_parts`` return; restoring it on such a host fails by name.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

from vmm.kvm._kvm import ffi, lib
from vmm.kvm.ioctl import KvmError, ioctl

# struct kvm_regs's fields, in order: the general registers a snapshot names.
REGISTERS = tuple(
    "rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags".split()
)


class Part(NamedTuple):
    """One kernel struct: its type, the ioctls that read and write it, the capability
    KVM needs for them (0: always there), and whether it exists only with an irqchip."""

    ctype: str
    get: int
    set: int
    cap: int = 0
    irqchip: bool = False


# In the order they are restored, Firecracker's (src/vmm/src/vstate/vcpu): special
# registers before the LAPIC (its base is in sregs); events and MP state last.
VCPU_PARTS = {
    "sregs": Part("struct kvm_sregs", lib.KVM_GET_SREGS, lib.KVM_SET_SREGS),
    "fpu": Part("struct kvm_fpu", lib.KVM_GET_FPU, lib.KVM_SET_FPU),
    "xsave": Part("struct kvm_xsave", lib.KVM_GET_XSAVE, lib.KVM_SET_XSAVE, lib.KVM_CAP_XSAVE),
    "xcrs": Part("struct kvm_xcrs", lib.KVM_GET_XCRS, lib.KVM_SET_XCRS, lib.KVM_CAP_XCRS),
    "debugregs": Part(
        "struct kvm_debugregs", lib.KVM_GET_DEBUGREGS, lib.KVM_SET_DEBUGREGS, lib.KVM_CAP_DEBUGREGS
    ),
    "lapic": Part("struct kvm_lapic_state", lib.KVM_GET_LAPIC, lib.KVM_SET_LAPIC, irqchip=True),
    "mp_state": Part(
        "struct kvm_mp_state", lib.KVM_GET_MP_STATE, lib.KVM_SET_MP_STATE, lib.KVM_CAP_MP_STATE
    ),
    "events": Part(
        "struct kvm_vcpu_events",
        lib.KVM_GET_VCPU_EVENTS,
        lib.KVM_SET_VCPU_EVENTS,
        lib.KVM_CAP_VCPU_EVENTS,
    ),
}

# The VM's interrupt controllers by KVM_GET_IRQCHIP's chip_id, then the PIT and clock.
_IRQCHIPS = {
    "pic_master": lib.KVM_IRQCHIP_PIC_MASTER,
    "pic_slave": lib.KVM_IRQCHIP_PIC_SLAVE,
    "ioapic": lib.KVM_IRQCHIP_IOAPIC,
}
VM_PARTS = (*_IRQCHIPS, "pit", "clock")


def part_size(name: str) -> int:
    """The size of a part's struct as this build of pyvmm was compiled with."""
    if name in VCPU_PARTS:
        return ffi.sizeof(VCPU_PARTS[name].ctype)
    if name in _IRQCHIPS:
        return ffi.sizeof("struct kvm_irqchip")
    return ffi.sizeof({"pit": "struct kvm_pit_state2", "clock": "struct kvm_clock_data"}[name])


def _offered(kvm, part: Part, irqchip: bool) -> bool:
    return (not part.irqchip or irqchip) and (not part.cap or kvm.check_extension(part.cap) > 0)


def vcpu_parts(vcpu) -> list[str]:
    """The vCPU parts this host's KVM can read and write for this VM. With XSAVE, the
    legacy FPU struct is left out: XSAVE holds the x87 and SSE state too."""
    kvm, irqchip = vcpu.vm.kvm, vcpu.vm.has_irqchip
    names = [n for n, p in VCPU_PARTS.items() if _offered(kvm, p, irqchip)]
    if "xsave" in names:
        names.remove("fpu")
    return names


def vm_parts(vm) -> list[str]:
    if not vm.has_irqchip:
        return []
    names = list(_IRQCHIPS)
    if vm.kvm.check_extension(lib.KVM_CAP_PIT_STATE2):
        names.append("pit")
    if vm.kvm.check_extension(lib.KVM_CAP_ADJUST_CLOCK):
        names.append("clock")
    return names


def _check_size(name: str, data: bytes) -> None:
    """A part read from a snapshot must be exactly the size of the struct it fills."""
    size = part_size(name)
    if len(data) != size:
        raise ValueError(f"{name} is {len(data)} bytes, KVM's struct is {size}")


def get_vcpu_part(vcpu, name: str) -> bytes:
    part = VCPU_PARTS[name]
    buf = ffi.new(part.ctype + " *")
    ioctl(vcpu.fd, part.get, buf, what=f"KVM_GET_{name.upper()}")
    return bytes(ffi.buffer(buf))


def set_vcpu_part(vcpu, name: str, data: bytes) -> None:
    part = VCPU_PARTS[name]
    _check_size(name, data)
    buf = ffi.new(part.ctype + " *")
    ffi.buffer(buf)[:] = data
    ioctl(vcpu.fd, part.set, buf, what=f"KVM_SET_{name.upper()}")


def get_regs(vcpu) -> dict[str, int]:
    regs = vcpu.get_regs()
    return {name: getattr(regs, name) for name in REGISTERS}


def set_regs(vcpu, values: dict[str, int]) -> None:
    regs = ffi.new("struct kvm_regs *")
    for name in REGISTERS:
        setattr(regs, name, values[name])
    vcpu.set_regs(regs)


def get_vm_part(vm, name: str) -> bytes:
    if name in _IRQCHIPS:
        chip = ffi.new("struct kvm_irqchip *")
        chip.chip_id = _IRQCHIPS[name]
        ioctl(vm.fd, lib.KVM_GET_IRQCHIP, chip, what=f"KVM_GET_IRQCHIP ({name})")
        return bytes(ffi.buffer(chip))
    if name == "pit":
        pit = ffi.new("struct kvm_pit_state2 *")
        ioctl(vm.fd, lib.KVM_GET_PIT2, pit, what="KVM_GET_PIT2")
        return bytes(ffi.buffer(pit))
    clock = ffi.new("struct kvm_clock_data *")
    ioctl(vm.fd, lib.KVM_GET_CLOCK, clock, what="KVM_GET_CLOCK")
    return bytes(ffi.buffer(clock))


def set_vm_part(vm, name: str, data: bytes) -> None:
    _check_size(name, data)
    if name in _IRQCHIPS:
        chip = ffi.new("struct kvm_irqchip *")
        ffi.buffer(chip)[:] = data
        if chip.chip_id != _IRQCHIPS[name]:
            raise ValueError(f"{name} holds chip {chip.chip_id}, not {_IRQCHIPS[name]}")
        ioctl(vm.fd, lib.KVM_SET_IRQCHIP, chip, what=f"KVM_SET_IRQCHIP ({name})")
    elif name == "pit":
        pit = ffi.new("struct kvm_pit_state2 *")
        ffi.buffer(pit)[:] = data
        ioctl(vm.fd, lib.KVM_SET_PIT2, pit, what="KVM_SET_PIT2")
    else:
        clock = ffi.new("struct kvm_clock_data *")
        ffi.buffer(clock)[:] = data
        # The guest's clock goes on from where it stood, not from the host's time now
        # (flags 0, not KVM_CLOCK_REALTIME): as Firecracker restores it.
        clock.flags = 0
        ioctl(vm.fd, lib.KVM_SET_CLOCK, clock, what="KVM_SET_CLOCK")


def msr_index_list(kvm) -> list[int]:
    """The MSRs KVM saves and restores for a guest (KVM_GET_MSR_INDEX_LIST): asked with
    room for none first, KVM answers E2BIG and says how many there are."""
    head = ffi.new("struct kvm_msr_list *")
    try:
        ioctl(kvm.fd, lib.KVM_GET_MSR_INDEX_LIST, head, what="KVM_GET_MSR_INDEX_LIST")
    except KvmError as e:
        if e.errno != errno.E2BIG:
            raise
    msrs = ffi.new("struct kvm_msr_list *", {"indices": head.nmsrs})
    msrs.nmsrs = head.nmsrs
    ioctl(kvm.fd, lib.KVM_GET_MSR_INDEX_LIST, msrs, what="KVM_GET_MSR_INDEX_LIST")
    return [msrs.indices[i] for i in range(msrs.nmsrs)]


def read_msrs(vcpu, indices: list[int]) -> tuple[dict[int, int], list[int]]:
    """Every MSR of ``indices`` this vCPU lets KVM read, and those it refused.

    KVM_GET_MSRS stops at the first MSR it cannot read and returns how many it did, so
    the refused one is skipped and the read goes on after it.
    """
    values: dict[int, int] = {}
    refused: list[int] = []
    rest = list(indices)
    while rest:
        got = vcpu.get_msrs(rest)
        values.update(got)
        if len(got) == len(rest):
            break
        refused.append(rest[len(got)])
        rest = rest[len(got) + 1 :]
    return values, refused


def write_msrs(vcpu, values: dict[int, int]) -> list[int]:
    """Set every MSR of ``values``; returns those KVM refused but already held at the
    saved value. KVM refuses some MSRs of its own list unless a feature is on (the
    async page fault MSRs need a local APIC in the kernel, for one); an MSR refused at
    a value other than the one it holds is an error."""
    skipped: list[int] = []
    rest = list(values.items())
    while rest:
        done = _set_msrs_count(vcpu, rest)
        if done == len(rest):
            break
        index, value = rest[done]
        if vcpu.get_msrs([index]).get(index, value) != value:
            raise KvmError(f"KVM_SET_MSRS of MSR {index:#x} = {value:#x}", errno.EINVAL)
        skipped.append(index)
        rest = rest[done + 1 :]
    return skipped


def _set_msrs_count(vcpu, items: list[tuple[int, int]]) -> int:
    """How many of ``items`` KVM_SET_MSRS takes before the first it refuses."""
    buf = ffi.new("struct kvm_msrs *", {"entries": len(items)})
    buf.nmsrs = len(items)
    for i, (index, value) in enumerate(items):
        buf.entries[i].index = index
        buf.entries[i].data = value
    return ioctl(vcpu.fd, lib.KVM_SET_MSRS, buf, what="KVM_SET_MSRS")


def get_cpuid(vcpu, entries: int = 256) -> bytes:
    """The CPUID table the vCPU was given (KVM_GET_CPUID2), as a struct kvm_cpuid2's bytes
    (its header and ``nent`` entries)."""
    cpuid = ffi.new("struct kvm_cpuid2 *", {"entries": entries})
    cpuid.nent = entries
    ioctl(vcpu.fd, lib.KVM_GET_CPUID2, cpuid, what="KVM_GET_CPUID2")
    size = ffi.sizeof("struct kvm_cpuid2") + cpuid.nent * ffi.sizeof("struct kvm_cpuid_entry2")
    return bytes(ffi.buffer(cpuid, size))


def set_cpuid(vcpu, data: bytes) -> None:
    head, entry = ffi.sizeof("struct kvm_cpuid2"), ffi.sizeof("struct kvm_cpuid_entry2")
    if len(data) < head or (len(data) - head) % entry:
        raise ValueError(f"a CPUID table of {len(data)} bytes is not whole entries")
    count = (len(data) - head) // entry
    cpuid = ffi.new("struct kvm_cpuid2 *", {"entries": count})
    ffi.buffer(cpuid, len(data))[:] = data
    if cpuid.nent != count:
        raise ValueError(f"the CPUID table says {cpuid.nent} entries and holds {count}")
    vcpu.set_cpuid(cpuid)
