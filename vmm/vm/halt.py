"""Noticing a guest that has stopped for good: halted with interrupts off.

Linux without ACPI cannot power a PC off: ``poweroff`` ends in ``native_machine_halt``,
HLT with interrupts disabled, and with the in-kernel irqchip a halted vCPU waits inside
the kernel, never exiting to the VMM. Only an NMI could wake it, and pyvmm sends none;
so the VMM looks, every so often (vmm/kvm/kick.py): RFLAGS.IF clear and a HLT just behind
RIP, at the same RIP twice in a row (running code with interrupts off moves on; an
immediate byte of 0xf4 behind RIP once is chance), and ends the run as a power-off.
With several CPUs, Linux's halt first stops the others (``stop_other_cpus``), which halt
the same way; an idle CPU halts with interrupts on. So the run ends once every vCPU has
been seen halted for good, or was never started (``maxcpus=1``: it still waits for its
SIPI).
"""

from __future__ import annotations

from vmm.guest_stop import GuestStop
from vmm.memory import GuestMemory

HALT_CHECK_INTERVAL = 0.25  # seconds between looks
HLT = 0xF4  # opcode (Intel SDM vol. 2, HLT)
RFLAGS_IF = 1 << 9  # interrupt enable flag (SDM vol. 1, 3.4.3)


class HaltWatch:
    """An exit-loop hook (``Machine.on_interrupt``) that stops the run on a final halt."""

    def __init__(self, memory: GuestMemory, cpus: int = 1):
        self.memory = memory
        self._halted_at: list[int | None] = [None] * cpus  # per vCPU: the RIP it halted at
        self._halted: list[bool] = [False] * cpus  # ... and seen there twice

    def check(self, vcpu) -> None:
        """Called on each vCPU's own thread, which alone writes that vCPU's entries."""
        regs = vcpu.get_regs()
        if vcpu.index and vcpu.waiting_for_sipi():
            rip = -1  # never started: as good as halted
        elif not regs.rflags & RFLAGS_IF and regs.rip and self._after_hlt(vcpu, regs.rip):
            rip = regs.rip
        else:
            rip = None
        i = vcpu.index
        self._halted[i] = rip is not None and rip == self._halted_at[i]
        self._halted_at[i] = rip
        if all(self._halted):
            raise GuestStop(0, "guest halted with interrupts off (power-off without ACPI)")

    def _after_hlt(self, vcpu, rip: int) -> bool:
        gpa = vcpu.translate(rip - 1)
        return gpa is not None and self.memory.contains(gpa) and self.memory.read(gpa, 1)[0] == HLT
