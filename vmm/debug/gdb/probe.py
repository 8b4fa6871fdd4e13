"""What this host's KVM delivers to a debugger, found out by trying it on a scratch VM.

Hardware KVM supports every KVM_SET_GUEST_DEBUG feature. PVM, the software KVM of the
machine pyvmm was built on, emulates guest ring 0 and does not deliver all of them: an
int3 is an emulation failure there, and data breakpoints never fire (docs/ARCHITECTURE.md,
"Debugging with gdb", has the table). Rather than recognise PVM by name, the stub asks
the host: a few real-mode instructions in a one-page VM, run once per feature, cost a
millisecond or two when ``--gdb`` is given, and nothing otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

from vmm.debug.gdb import debugregs
from vmm.kvm import DebugExit, Kvm
from vmm.memory import GuestMemory

_BASE = 0x7000  # the one page of the scratch VM: code, then the watched word
_WATCHED = _BASE + 0x800
# nop; mov [WATCHED], ax; int3; hlt (16-bit code, where the vCPU starts after reset)
_CODE = bytes((0x90, 0xA3)) + _WATCHED.to_bytes(2, "little") + bytes((0xCC, 0xF4))
_MOV, _INT3 = _BASE + 1, _BASE + 4


class DebugSupport(NamedTuple):
    """Which debug events reach the VMM from guest kernel code on this host."""

    single_step: bool
    hw_breakpoints: bool
    sw_breakpoints: bool
    watchpoints: bool


def probe(kvm: Kvm) -> DebugSupport:
    return DebugSupport(
        single_step=_stops_at(kvm, _MOV, single_step=True),
        hw_breakpoints=_stops_at(
            kvm, _MOV, debugreg=debugregs.debugreg([(_MOV, debugregs.EXECUTE, 1)])
        ),
        sw_breakpoints=_stops_at(kvm, _INT3, sw_breakpoints=True),
        # A data breakpoint is a trap: it reports the instruction after the store.
        watchpoints=_stops_at(
            kvm, _INT3, debugreg=debugregs.debugreg([(_WATCHED, debugregs.WRITE, 2)])
        ),
    )


def _stops_at(kvm: Kvm, where: int, **debug) -> bool:
    """Does the scratch guest, run with these debug settings, stop at ``where``?"""
    vm = kvm.create_vm()
    memory = GuestMemory([(_BASE, 0x1000)])
    vcpu = None
    try:
        vm.set_memory(_BASE, 0x1000, memory.regions[0].host_address)
        memory.write(_BASE, _CODE)
        vcpu = vm.create_vcpu(0)
        sregs = vcpu.get_sregs()
        sregs.cs.base, sregs.cs.selector = 0, 0
        vcpu.set_sregs(sregs)
        regs = vcpu.get_regs()
        regs.rip, regs.rflags = _BASE, 2
        vcpu.set_regs(regs)
        vcpu.set_guest_debug(**debug)
        exit = vcpu.run()
        return isinstance(exit, DebugExit) and vcpu.get_regs().rip == where
    finally:
        if vcpu is not None:
            vcpu.close()
        memory.close()
        vm.close()
