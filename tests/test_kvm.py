"""The KVM layer on its own: capabilities, memory slots, registers, MSRs, IRQ lines."""

import pytest
from vmm.kvm._kvm import lib
from vmtest import needs_kvm

from vmm.debug.gdb import debugregs
from vmm.debug.gdb.probe import probe
from vmm.kvm import DebugExit, IoExit, Kvm, KvmError
from vmm.memory import GuestMemory

pytestmark = needs_kvm

MSR_STAR = 0xC0000081  # SYSCALL's segment selectors: any 64-bit value is accepted


@pytest.fixture
def vm():
    kvm = Kvm()
    vm = kvm.create_vm()
    yield vm
    vm.close()
    kvm.close()


def test_capabilities_pyvmm_relies_on_are_present():
    kvm = Kvm()
    try:
        assert kvm.check_extension(lib.KVM_CAP_USER_MEMORY)
        assert kvm.check_extension(lib.KVM_CAP_IRQFD)
        assert kvm.check_extension(lib.KVM_CAP_IOEVENTFD)
        assert kvm.supported_cpuid().nent > 0
    finally:
        kvm.close()


def test_registers_and_msrs_round_trip(vm):
    vcpu = vm.create_vcpu(0)
    try:
        regs = vcpu.get_regs()
        regs.rax, regs.rip = 0x1234, 0x7C00
        vcpu.set_regs(regs)
        again = vcpu.get_regs()
        assert (again.rax, again.rip) == (0x1234, 0x7C00)
        vcpu.set_msrs({MSR_STAR: 0x0023001000000000})
        assert vcpu.get_msrs([MSR_STAR]) == {MSR_STAR: 0x0023001000000000}
    finally:
        vcpu.close()


def test_an_msr_kvm_refuses_is_an_error_naming_it(vm):
    vcpu = vm.create_vcpu(0)
    try:
        with pytest.raises(KvmError, match="0x12345678"):
            vcpu.set_msrs({0x12345678: 1})
    finally:
        vcpu.close()


def test_irq_line_needs_the_irqchip_and_works_with_it(vm):
    with pytest.raises(KvmError, match="KVM_IRQ_LINE"):
        vm.set_irq_line(4, 1)
    vm.create_irqchip()
    vm.set_irq_line(4, 1)
    vm.set_irq_line(4, 0)


def test_overlapping_memory_slots_are_refused(vm):
    mem = GuestMemory([(0, 0x10000)])
    try:
        vm.set_memory(0, 0x10000, mem.regions[0].host_address)
        with pytest.raises(KvmError, match="KVM_SET_USER_MEMORY_REGION"):
            vm.set_memory(0x8000, 0x10000, mem.regions[0].host_address)
    finally:
        mem.close()


def _real_mode_vcpu(vm, code: bytes):
    """A vCPU at 0x1000 in real mode, over one page holding ``code``."""
    mem = GuestMemory([(0x1000, 0x1000)])
    vm.set_memory(0x1000, 0x1000, mem.regions[0].host_address)
    mem.write(0x1000, code)
    vcpu = vm.create_vcpu(0)
    sregs = vcpu.get_sregs()
    sregs.cs.base, sregs.cs.selector = 0, 0
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip, regs.rflags = 0x1000, 2
    vcpu.set_regs(regs)
    return vcpu, mem


NOPS_THEN_OUT = bytes((0x90, 0x90, 0xE6, 0x80))  # nop; nop; out 0x80, al


def test_single_step_exits_after_each_instruction(vm):
    vcpu, mem = _real_mode_vcpu(vm, NOPS_THEN_OUT)
    try:
        vcpu.set_guest_debug(single_step=True)
        exit = vcpu.run()
        assert isinstance(exit, DebugExit) and exit.exception == 1  # #DB
        assert vcpu.get_regs().rip == 0x1001
        vcpu.set_guest_debug()  # off again: the guest runs on to its port write
        assert isinstance(vcpu.run(), IoExit)
    finally:
        vcpu.close()
        mem.close()


def test_hardware_breakpoint_stops_before_the_instruction(vm):
    vcpu, mem = _real_mode_vcpu(vm, NOPS_THEN_OUT)
    try:
        vcpu.set_guest_debug(debugreg=debugregs.debugreg([(0x1002, debugregs.EXECUTE, 1)]))
        exit = vcpu.run()
        assert isinstance(exit, DebugExit) and exit.dr6 & 1  # B0: DR0 fired
        assert exit.pc == vcpu.get_regs().rip == 0x1002
    finally:
        vcpu.close()
        mem.close()


def test_fpu_state_round_trips(vm):
    vcpu = vm.create_vcpu(0)
    try:
        fpu = vcpu.get_fpu()
        fpu.xmm[3][0:4] = [1, 2, 3, 4]
        fpu.fcw = 0x27F  # double precision (the default is 0x37f, extended)
        vcpu.set_fpu(fpu)
        again = vcpu.get_fpu()
        assert bytes(again.xmm[3])[:4] == b"\x01\x02\x03\x04" and again.fcw == 0x27F
    finally:
        vcpu.close()


def test_the_debug_probe_finds_steps_and_hardware_breakpoints():
    """Both work on every KVM, PVM included; int3 and watchpoints depend on the host."""
    kvm = Kvm()
    try:
        support = probe(kvm)
    finally:
        kvm.close()
    assert support.single_step and support.hw_breakpoints
