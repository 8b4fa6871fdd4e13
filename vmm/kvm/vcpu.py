"""A virtual CPU: its registers, and ``run()``, which enters the guest and decodes the exit.

``KVM_RUN`` returns when the guest does something the kernel will not handle by
itself. The reason and its details sit in ``struct kvm_run``, a page shared with the
kernel through mmap (api.rst, section 5). ``run()`` turns that into one small Python
object per exit, so the machine above can dispatch on the type without knowing KVM.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
from collections.abc import Sequence

from vmm.kvm._kvm import ffi, lib
from vmm.kvm.ioctl import KvmError, ioctl


class VmExit:
    """Why KVM_RUN returned. Plain classes with __slots__, not dataclasses: one is made
    per exit, and these are the cheapest to create (and to import)."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class IoExit(VmExit):
    """IN/OUT to a port. ``data`` is a window onto kvm_run: for IN, fill it before the next run.

    ``count`` > 1 for string instructions (rep outsb): ``data`` then holds count items.
    For OUT, ``data`` is the bytes written; for IN, a writable window to fill.
    """

    __slots__ = ("port", "size", "count", "is_write", "data")

    def __init__(self, port: int, size: int, count: int, is_write: bool, data: memoryview):
        self.port = port
        self.size = size
        self.count = count
        self.is_write = is_write
        self.data = data


class MmioExit(VmExit):
    """A load or store to a guest-physical address with no memory slot behind it."""

    __slots__ = ("addr", "is_write", "data")

    def __init__(self, addr: int, is_write: bool, data: memoryview):
        self.addr = addr
        self.is_write = is_write
        self.data = data


class HltExit(VmExit):
    """HLT with no in-kernel irqchip: the guest has nothing left to do."""

    __slots__ = ()


class ShutdownExit(VmExit):
    """A triple fault (or other shutdown condition); the guest cannot continue."""

    __slots__ = ()


class FailEntryExit(VmExit):
    """The hardware refused to enter the guest: its state is invalid."""

    __slots__ = ("hardware_reason",)

    def __init__(self, hardware_reason: int):
        self.hardware_reason = hardware_reason


class InternalErrorExit(VmExit):
    """KVM itself could not go on, for instance an instruction it cannot emulate."""

    __slots__ = ("suberror", "data")

    def __init__(self, suberror: int, data: tuple[int, ...]):
        self.suberror = suberror
        self.data = data


class SystemEventExit(VmExit):
    """The guest asked for shutdown or reset, or reported a crash."""

    __slots__ = ("type",)

    def __init__(self, type: int):
        self.type = type


class InterruptedExit(VmExit):
    """KVM_RUN returned early because a signal arrived for this thread."""

    __slots__ = ()


class DebugExit(VmExit):
    """A debug exception the VMM asked to see with ``set_guest_debug``: a single step or
    a hardware breakpoint (vector 1, #DB; ``dr6`` says which) or an int3 (vector 3, #BP).
    ``pc`` is the linear address of the instruction it stopped at (RIP plus CS base)."""

    __slots__ = ("exception", "pc", "dr6", "dr7")

    def __init__(self, exception: int, pc: int, dr6: int, dr7: int):
        self.exception = exception
        self.pc = pc
        self.dr6 = dr6
        self.dr7 = dr7


class UnknownExit(VmExit):
    __slots__ = ("reason",)

    def __init__(self, reason: int):
        self.reason = reason


_INTERNAL_ERRORS = {
    lib.KVM_INTERNAL_ERROR_EMULATION: "instruction emulation failed",
    lib.KVM_INTERNAL_ERROR_SIMUL_EX: "exception while delivering an exception",
    lib.KVM_INTERNAL_ERROR_DELIVERY_EV: "event delivery failed",
    lib.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "unexpected hardware exit reason",
}


def internal_error_name(suberror: int) -> str:
    return _INTERNAL_ERRORS.get(suberror, f"suberror {suberror}")


def _unpacker(fields: list[tuple[int, str]]) -> struct.Struct:
    """A struct.Struct reading fields at the given offsets, padding in between.

    The offsets come from the C compiler (through cffi), so decoding an exit costs one
    ``unpack_from`` instead of a dozen cffi attribute reads, with nothing hand-typed.
    """
    fmt, pos = "<", 0
    for offset, code in sorted(fields):
        fmt += f"{offset - pos}x{code}" if offset > pos else code
        pos = offset + struct.calcsize("<" + code)
    return struct.Struct(fmt)


def _offsets():
    run = ffi.new("struct kvm_run *")
    base = int(ffi.cast("uintptr_t", run))

    def at(cdata_field) -> int:
        return int(ffi.cast("uintptr_t", ffi.addressof(cdata_field))) - base

    def member(parent, name: str) -> int:
        return at(parent) + ffi.offsetof(ffi.typeof(parent), name)

    reason = ffi.offsetof("struct kvm_run", "exit_reason")
    io = _unpacker(
        [
            (reason, "I"),
            (member(run.io, "direction"), "B"),
            (member(run.io, "size"), "B"),
            (member(run.io, "port"), "H"),
            (member(run.io, "count"), "I"),
            (member(run.io, "data_offset"), "Q"),
        ]
    )
    mmio = _unpacker(
        [
            (member(run.mmio, "phys_addr"), "Q"),
            (member(run.mmio, "len"), "I"),
            (member(run.mmio, "is_write"), "B"),
        ]
    )
    return io, mmio, member(run.mmio, "data")


# The exit decoders, and constants read once (a cffi ``lib`` lookup per exit adds up).
_IO_HEADER, _MMIO_HEADER, _MMIO_DATA = _offsets()
_KVM_RUN = lib.KVM_RUN
_ioctl_val = lib.kvm_ioctl_val
_EXIT_IO = lib.KVM_EXIT_IO
_EXIT_MMIO = lib.KVM_EXIT_MMIO
_IO_OUT = lib.KVM_EXIT_IO_OUT


class Vcpu:
    def __init__(self, vm, fd: int, index: int):
        self.vm = vm
        self.fd = fd
        self.index = index
        size = vm.kvm.vcpu_mmap_size
        self._run_mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._run_view = memoryview(self._run_mm)
        self.kvm_run = ffi.cast("struct kvm_run *", ffi.from_buffer(self._run_mm))

    # --- entering the guest -------------------------------------------------------

    def run(self):
        """Run the guest until its next exit and return that exit, decoded.

        For writes (OUT, MMIO stores) the exit carries the bytes; for reads it carries
        a writable window onto kvm_run that the VMM fills before the next ``run()``.
        """
        if _ioctl_val(self.fd, _KVM_RUN, 0) < 0:
            err = ffi.errno
            if err in (errno.EINTR, errno.EAGAIN):
                return InterruptedExit()
            raise KvmError("KVM_RUN", err)
        reason, direction, size, port, count, off = _IO_HEADER.unpack_from(self._run_mm)
        if reason == _EXIT_IO:
            end = off + size * count
            if direction == _IO_OUT:
                return IoExit(port, size, count, True, self._run_mm[off:end])
            return IoExit(port, size, count, False, self._run_view[off:end])
        if reason == _EXIT_MMIO:
            addr, length, is_write = _MMIO_HEADER.unpack_from(self._run_mm)
            end = _MMIO_DATA + length
            if is_write:
                return MmioExit(addr, True, self._run_mm[_MMIO_DATA:end])
            return MmioExit(addr, False, self._run_view[_MMIO_DATA:end])
        return self._decode_rare(reason)

    def _decode_rare(self, reason: int):
        """Exits that end or interrupt a run: decoded through cffi, as speed does not matter."""
        run = self.kvm_run
        if reason == lib.KVM_EXIT_HLT:
            return HltExit()
        if reason == lib.KVM_EXIT_SHUTDOWN:
            return ShutdownExit()
        if reason == lib.KVM_EXIT_FAIL_ENTRY:
            return FailEntryExit(run.fail_entry.hardware_entry_failure_reason)
        if reason == lib.KVM_EXIT_INTERNAL_ERROR:
            internal = run.internal
            n = min(internal.ndata, 16)
            return InternalErrorExit(internal.suberror, tuple(internal.data[0:n]))
        if reason == lib.KVM_EXIT_SYSTEM_EVENT:
            return SystemEventExit(run.system_event.type)
        if reason == lib.KVM_EXIT_INTR:
            return InterruptedExit()
        if reason == lib.KVM_EXIT_DEBUG:
            arch = run.debug.arch
            return DebugExit(arch.exception, arch.pc, arch.dr6, arch.dr7)
        return UnknownExit(reason)

    # --- registers ------------------------------------------------------------------

    def get_regs(self):
        regs = ffi.new("struct kvm_regs *")
        ioctl(self.fd, lib.KVM_GET_REGS, regs, what="KVM_GET_REGS")
        return regs

    def set_regs(self, regs) -> None:
        ioctl(self.fd, lib.KVM_SET_REGS, regs, what="KVM_SET_REGS")

    def get_sregs(self):
        sregs = ffi.new("struct kvm_sregs *")
        ioctl(self.fd, lib.KVM_GET_SREGS, sregs, what="KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs) -> None:
        ioctl(self.fd, lib.KVM_SET_SREGS, sregs, what="KVM_SET_SREGS")

    def set_msrs(self, msrs: dict[int, int]) -> None:
        buf = ffi.new("struct kvm_msrs *", {"entries": len(msrs)})
        buf.nmsrs = len(msrs)
        for i, (index, value) in enumerate(msrs.items()):
            buf.entries[i].index = index
            buf.entries[i].data = value
        done = ioctl(self.fd, lib.KVM_SET_MSRS, buf, what="KVM_SET_MSRS")
        if done != len(msrs):
            bad = list(msrs)[done]
            raise KvmError(f"KVM_SET_MSRS of MSR {bad:#x}", errno.EINVAL)

    def get_msrs(self, indices: list[int]) -> dict[int, int]:
        buf = ffi.new("struct kvm_msrs *", {"entries": len(indices)})
        buf.nmsrs = len(indices)
        for i, index in enumerate(indices):
            buf.entries[i].index = index
        done = ioctl(self.fd, lib.KVM_GET_MSRS, buf, what="KVM_GET_MSRS")
        return {buf.entries[i].index: buf.entries[i].data for i in range(done)}

    def waiting_for_sipi(self) -> bool:
        """The vCPU has not been started: an application processor whose local APIC has
        had no INIT and SIPI yet (``KVM_GET_MP_STATE``, api.rst 4.38)."""
        state = ffi.new("struct kvm_mp_state *")
        ioctl(self.fd, lib.KVM_GET_MP_STATE, state, what="KVM_GET_MP_STATE")
        return state.mp_state in (lib.KVM_MP_STATE_UNINITIALIZED, lib.KVM_MP_STATE_INIT_RECEIVED)

    def set_cpuid(self, cpuid) -> None:
        ioctl(self.fd, lib.KVM_SET_CPUID2, cpuid, what="KVM_SET_CPUID2")

    def translate(self, linear: int) -> int | None:
        """Guest-physical address of a guest-linear one through the guest's page tables."""
        tr = ffi.new("struct kvm_translation *")
        tr.linear_address = linear
        try:
            ioctl(self.fd, lib.KVM_TRANSLATE, tr, what="KVM_TRANSLATE")
        except KvmError:
            return None
        return tr.physical_address if tr.valid else None

    def get_fpu(self):
        """x87 and SSE state (``struct kvm_fpu``): what a debugger shows as st0-7, xmm0-15."""
        fpu = ffi.new("struct kvm_fpu *")
        ioctl(self.fd, lib.KVM_GET_FPU, fpu, what="KVM_GET_FPU")
        return fpu

    def set_fpu(self, fpu) -> None:
        ioctl(self.fd, lib.KVM_SET_FPU, fpu, what="KVM_SET_FPU")

    def set_guest_debug(
        self,
        single_step: bool = False,
        sw_breakpoints: bool = False,
        debugreg: Sequence[int] | None = None,
    ) -> None:
        """Which debug events leave KVM_RUN as a ``DebugExit`` (api.rst, KVM_SET_GUEST_DEBUG).

        ``single_step`` traps after each instruction; ``sw_breakpoints`` makes an int3
        exit to the VMM instead of reaching the guest's #BP handler; ``debugreg`` (DR0-DR7,
        DR4 and DR5 unused) arms hardware breakpoints and watchpoints that KVM loads into
        the real debug registers while the guest runs. All off: the guest runs as usual.
        """
        dbg = ffi.new("struct kvm_guest_debug *")
        control = 0
        if single_step:
            control |= lib.KVM_GUESTDBG_SINGLESTEP
        if sw_breakpoints:
            control |= lib.KVM_GUESTDBG_USE_SW_BP
        if debugreg is not None:
            control |= lib.KVM_GUESTDBG_USE_HW_BP
            dbg.arch.debugreg = list(debugreg)
        if control:
            control |= lib.KVM_GUESTDBG_ENABLE
        dbg.control = control
        ioctl(self.fd, lib.KVM_SET_GUEST_DEBUG, dbg, what="KVM_SET_GUEST_DEBUG")

    def request_exit(self, on: bool = True) -> None:
        """Make the next (or the current, once a signal kicks it) KVM_RUN return at once,
        with any pending I/O completed (``immediate_exit``, api.rst, 5): how a debugger
        on another thread stops a running vCPU without racing its entry into the guest."""
        self.kvm_run.immediate_exit = int(on)

    def close(self) -> None:
        self._run_view.release()
        self.kvm_run = None
        self._run_mm.close()
        os.close(self.fd)
