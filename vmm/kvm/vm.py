"""A KVM virtual machine: memory slots, the interrupt controllers, IRQ lines, eventfds."""

from __future__ import annotations

import os

from vmm.kvm._kvm import ffi, lib
from vmm.kvm.ioctl import ioctl, ioctl_val

# Three pages KVM needs below 4 GiB for its real-mode TSS on Intel (api.rst 4.39),
# and the identity-map page right before it; the same addresses QEMU and kvmtool use.
KVM_TSS_ADDRESS = 0xFFFBD000
KVM_IDENTITY_MAP_ADDRESS = 0xFFFBC000
IOAPIC_MASKED = 1 << 16  # redirection entry: interrupt mask (82093AA datasheet, 3.2.4)


class Vm:
    """A VM file descriptor and the few VM-wide settings pyvmm makes."""

    def __init__(self, kvm, fd: int):
        self.kvm = kvm
        self.fd = fd
        # (guest-physical address, size, host address, flags) by slot number.
        self.slots: list[tuple[int, int, int, int]] = []
        self.has_irqchip = False
        ioctl_val(fd, lib.KVM_SET_TSS_ADDR, KVM_TSS_ADDRESS, what="KVM_SET_TSS_ADDR")
        addr = ffi.new("uint64_t *", KVM_IDENTITY_MAP_ADDRESS)
        ioctl(fd, lib.KVM_SET_IDENTITY_MAP_ADDR, addr, what="KVM_SET_IDENTITY_MAP_ADDR")

    def set_memory(self, gpa: int, size: int, host_addr: int, readonly: bool = False) -> int:
        """Map host memory at guest-physical ``gpa`` in the next free slot; returns the slot."""
        self.slots.append((gpa, size, host_addr, lib.KVM_MEM_READONLY if readonly else 0))
        self.update_slot(len(self.slots) - 1)
        return len(self.slots) - 1

    def update_slot(self, slot: int, extra_flags: int = 0) -> None:
        """(Re)register a slot as recorded, with ``extra_flags`` (KVM_MEM_LOG_DIRTY_PAGES)."""
        gpa, size, host_addr, flags = self.slots[slot]
        region = ffi.new("struct kvm_userspace_memory_region *")
        region.slot = slot
        region.flags = flags | extra_flags
        region.guest_phys_addr = gpa
        region.memory_size = size
        region.userspace_addr = host_addr
        ioctl(self.fd, lib.KVM_SET_USER_MEMORY_REGION, region, what="KVM_SET_USER_MEMORY_REGION")

    def create_irqchip(self) -> None:
        """The in-kernel PIC, IOAPIC and local APICs (so interrupts never leave the kernel).

        With it, HLT waits in the kernel for an interrupt rather than exiting to us.
        Must come before the vCPUs are created.
        """
        ioctl(self.fd, lib.KVM_CREATE_IRQCHIP, what="KVM_CREATE_IRQCHIP")
        pit = ffi.new("struct kvm_pit_config *")
        pit.flags = lib.KVM_PIT_SPEAKER_DUMMY
        ioctl(self.fd, lib.KVM_CREATE_PIT2, pit, what="KVM_CREATE_PIT2")
        self.has_irqchip = True

    def set_irq_line(self, irq: int, level: int) -> None:
        line = ffi.new("struct kvm_irq_level *")
        line.irq = irq
        line.level = level
        ioctl(self.fd, lib.KVM_IRQ_LINE, line, what="KVM_IRQ_LINE")

    def ioapic_route(self, pin: int) -> tuple[int, int] | None:
        """(vector, destination APIC id) the guest programmed for IOAPIC ``pin``, or None
        while the pin is masked (``KVM_GET_IRQCHIP``; the entry's layout: 82093AA
        datasheet, 3.2.4). What ``--trace`` shows of an interrupt the VMM raises."""
        if not 0 <= pin < lib.KVM_IOAPIC_NUM_PINS:
            return None
        chip = ffi.new("struct kvm_irqchip *")
        chip.chip_id = lib.KVM_IRQCHIP_IOAPIC
        ioctl(self.fd, lib.KVM_GET_IRQCHIP, chip, what="KVM_GET_IRQCHIP")
        entry = lib.ioapic_redirection(chip, pin)
        if entry & IOAPIC_MASKED:
            return None
        return entry & 0xFF, entry >> 56

    def register_irqfd(self, eventfd: int, gsi: int) -> None:
        """Writing to ``eventfd`` now raises ``gsi`` in the kernel, with no exit and no ioctl."""
        irqfd = ffi.new("struct kvm_irqfd *")
        irqfd.fd = eventfd
        irqfd.gsi = gsi
        ioctl(self.fd, lib.KVM_IRQFD, irqfd, what="KVM_IRQFD")

    def register_ioeventfd(
        self, eventfd: int, addr: int, size: int, pio: bool = False, datamatch: int | None = None
    ) -> None:
        """A guest write of ``size`` bytes to ``addr`` (of the value ``datamatch``, if
        given) signals ``eventfd`` instead of exiting."""
        ev = ffi.new("struct kvm_ioeventfd *")
        ev.addr = addr
        ev.len = size
        ev.fd = eventfd
        ev.flags = lib.KVM_IOEVENTFD_FLAG_PIO if pio else 0
        if datamatch is not None:
            ev.flags |= lib.KVM_IOEVENTFD_FLAG_DATAMATCH
            ev.datamatch = datamatch
        ioctl(self.fd, lib.KVM_IOEVENTFD, ev, what="KVM_IOEVENTFD")

    def create_vcpu(self, index: int):
        from vmm.kvm.vcpu import Vcpu

        fd = ioctl_val(self.fd, lib.KVM_CREATE_VCPU, index, what="KVM_CREATE_VCPU")
        return Vcpu(self, fd, index)

    def close(self) -> None:
        os.close(self.fd)
