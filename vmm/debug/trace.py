"""Seeing inside a run: the guest instruction behind an exit, disassembled with capstone,
a line per exit for ``--trace``, and the register dump of a failure report.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import capstone

from vmm.kvm import HltExit, IoExit, MmioExit
from vmm.memory import GuestMemory

MAX_INSTRUCTION = 15  # the longest x86 instruction, in bytes (SDM vol. 2, 2.3.11)
# Exits that KVM reports with RIP already past the instruction that caused them: for
# these we look back for that instruction (IN/OUT are at most 3 bytes, HLT is 1).
_COMPLETED_BEFORE_EXIT = {IoExit: ("in", "out"), HltExit: ("hlt",)}

_disassemblers: dict[int, capstone.Cs] = {}


def _cpu_mode(sregs) -> int:
    """Capstone's mode for the code segment the vCPU is executing in."""
    if sregs.efer & (1 << 10) and sregs.cs.l:
        return capstone.CS_MODE_64
    if sregs.cr0 & 1 and sregs.cs.db:
        return capstone.CS_MODE_32
    return capstone.CS_MODE_16


def cpu_mode_label(sregs) -> str:
    """The mode and privilege level the vCPU is in, as ``64-bit ring 3``.

    Long mode is EFER.LMA with CS.L (SDM vol. 3, 5.2.1); otherwise protected mode
    (CR0.PE) with CS.D for 32-bit code, else 16-bit. The ring is the current privilege
    level, CS's RPL in protected mode (SDM vol. 3, 5.5) and 0 in real mode.
    """
    bits = {capstone.CS_MODE_64: 64, capstone.CS_MODE_32: 32}.get(_cpu_mode(sregs), 16)
    ring = sregs.cs.selector & 3 if sregs.cr0 & 1 else 0
    return f"{bits}-bit ring {ring}"


def _code_bytes(vcpu, memory: GuestMemory, linear: int, size: int) -> bytes:
    """Guest bytes at a linear address, through the guest's own page tables."""
    gpa = vcpu.translate(linear)
    if gpa is None:
        return b""
    # Stay within the page: the next one may map elsewhere (or nowhere).
    size = min(size, 0x1000 - (gpa & 0xFFF)) if gpa & 0xFFF else size
    try:
        return memory.read(gpa, size)
    except ValueError:
        return b""


def disassemble(vcpu, memory: GuestMemory, exit=None) -> str:
    """The instruction behind an exit, as ``address: bytes  mnemonic operands``.

    Usually that is the one at RIP; after port I/O and HLT, KVM has already stepped
    past it, so we look back for the IN/OUT/HLT that ends at RIP.
    """
    looking_back = _COMPLETED_BEFORE_EXIT.get(type(exit), ())
    regs = vcpu.get_regs()
    sregs = vcpu.get_sregs()
    mode = _cpu_mode(sregs)
    cs = _disassemblers.get(mode)
    if cs is None:
        cs = _disassemblers[mode] = capstone.Cs(capstone.CS_ARCH_X86, mode)
    rip = sregs.cs.base + regs.rip if mode == capstone.CS_MODE_16 else regs.rip
    candidates = [rip - n for n in (1, 2, 3)] if looking_back else []
    for linear in [*candidates, rip]:
        code = _code_bytes(vcpu, memory, linear, MAX_INSTRUCTION)
        for insn in cs.disasm(code, linear, 1):
            if linear != rip and not (
                insn.address + insn.size == rip and insn.mnemonic.startswith(looking_back)
            ):
                break
            return f"{insn.address:#x}: {insn.bytes.hex(' '):<20} {insn.mnemonic} {insn.op_str}"
    return f"{rip:#x}: (no code readable at this address)"


def describe_vcpu(vcpu, memory: GuestMemory, exit=None) -> str:
    """Registers and the instruction at RIP: what a student needs to see why a guest died."""
    r = vcpu.get_regs()
    s = vcpu.get_sregs()
    rows = [
        f"  rip {r.rip:016x}  rsp {r.rsp:016x}  rflags {r.rflags:08x}",
        f"  rax {r.rax:016x}  rbx {r.rbx:016x}  rcx {r.rcx:016x}  rdx {r.rdx:016x}",
        f"  rsi {r.rsi:016x}  rdi {r.rdi:016x}  rbp {r.rbp:016x}  r8  {r.r8:016x}",
        f"  r9  {r.r9:016x}  r10 {r.r10:016x}  r11 {r.r11:016x}  r12 {r.r12:016x}",
        f"  r13 {r.r13:016x}  r14 {r.r14:016x}  r15 {r.r15:016x}",
        f"  cs {s.cs.selector:04x} ({cpu_mode_label(s)})  ss {s.ss.selector:04x}"
        f"  cr0 {s.cr0:08x}  cr2 {s.cr2:016x}",
        f"  cr3 {s.cr3:016x}  cr4 {s.cr4:08x}  efer {s.efer:x}",
        f"  instruction: {disassemble(vcpu, memory, exit)}",
    ]
    return "\n".join(rows)


class Tracer:
    """``--trace``: one line per exit with the CPU's mode and ring, the exit's details and
    the guest instruction behind it (so a mode switch shows in the trace). With several
    vCPUs each line names the vCPU that exited; the lines of all of them are numbered in
    one sequence, in the order the exits were seen."""

    def __init__(
        self, memory: GuestMemory, write: Callable[[str], None] | None = None, cpus: int = 1
    ):
        self.memory = memory
        self.write = write or (lambda line: print(line, file=sys.stderr))
        self._numbers = itertools.count(1)  # next() is atomic: vCPU threads share it
        self._vcpu_column = cpus > 1

    def __call__(self, vcpu, exit) -> None:
        number = next(self._numbers)
        if isinstance(exit, IoExit):
            what = (
                f"IO   {'out' if exit.is_write else 'in '} port {exit.port:#06x} "
                f"size {exit.size}" + (f" data {exit.data.hex()}" if exit.is_write else "")
            )
        elif isinstance(exit, MmioExit):
            what = (
                f"MMIO {'write' if exit.is_write else 'read '} {exit.addr:#x} "
                f"size {len(exit.data)}" + (f" data {exit.data.hex()}" if exit.is_write else "")
            )
        else:
            what = type(exit).__name__.removesuffix("Exit").upper()
        insn = disassemble(vcpu, self.memory, exit)
        mode = cpu_mode_label(vcpu.get_sregs())
        who = f"vcpu{vcpu.index} " if self._vcpu_column else ""
        self.write(f"[{number:6}] {who}{mode:<13} {what:<44} {insn}")

    def irq_for(self, vm) -> Callable[[str, int], None]:
        """A ``Machine.on_irq`` hook: a line for each interrupt the VMM raises, with the
        vector and CPU the guest's IOAPIC sends it to, between the exits around it."""

        def irq(mechanism: str, gsi: int) -> None:
            route = vm.ioapic_route(gsi)
            where = f"vector {route[0]:#04x} to cpu {route[1]}" if route else "masked in the IOAPIC"
            self.write(f"{'':8} {'':<13} IRQ  {mechanism} gsi {gsi} -> {where}")

        return irq
