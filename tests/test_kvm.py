"""The KVM layer on its own: capabilities, memory slots, registers, MSRs, IRQ lines."""

import pytest
from vmm.kvm._kvm import lib
from vmtest import needs_kvm

from vmm.kvm import Kvm, KvmError
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
