"""The x86 register file as gdb sees it: a target description, and the ``g`` packet.

gdb learns the register layout from the XML target description the stub serves
(gdb manual, "Target Descriptions"; the feature and register names are gdb's own
``org.gnu.gdb.i386.*``), and then reads all registers in that order with ``g``. gdb
cannot change the layout in the middle of a session, so, as QEMU does, the stub picks
it when gdb connects: the 64-bit (x86-64) layout for a guest in protected or long mode,
with 32-bit values zero-extended; and for a guest still in real mode, as a boot sector
is, gdb's ``i8086`` architecture with the 32-bit layout, so that code disassembles as
16-bit. The program counter is (E/R)IP, and memory addresses are linear, as in QEMU.
"""

from __future__ import annotations

from typing import NamedTuple

X86_CR0_PE = 1 << 0  # Intel SDM vol. 3, 2.5
EFER_LMA = 1 << 10  # long mode active (SDM vol. 3, 2.2.1)


class Register(NamedTuple):
    name: str
    bits: int
    kind: str  # where it lives: gpr (kvm_regs), seg, cr (kvm_sregs), fpr, fpu, xmm; or absent
    key: str | int  # the field or index there
    type: str = "int"
    group: str = ""


_EFLAGS_BITS = [
    ("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9),
    ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19),
    ("VIP", 20), ("ID", 21),
]  # fmt: skip
_MXCSR_BITS = [
    ("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6), ("IM", 7),
    ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15),
]  # fmt: skip
_FPU_CONTROL = ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"]
_SEGMENTS = ["cs", "ss", "ds", "es", "fs", "gs"]


class Layout(NamedTuple):
    """One way of showing the registers to gdb: its architecture name and register list."""

    architecture: str
    registers: tuple[Register, ...]

    def target_xml(self) -> str:
        return _target_xml(self)


def _layout(architecture: str, wide: bool) -> Layout:
    """gdb's i386 (``wide`` False) or amd64 register order: core, then SSE, then the
    control registers in a feature of pyvmm's own (gdb shows them, ``info registers cr0``)."""
    if wide:
        gprs = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"]
        names = gprs + [f"r{n}" for n in range(8, 16)]
        regs = [Register(n, 64, "gpr", n, "int64") for n in names]
        regs[6:8] = [Register(n, 64, "gpr", n, "data_ptr") for n in ("rbp", "rsp")]
        regs.append(Register("rip", 64, "gpr", "rip", "code_ptr"))
    else:
        order = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"]
        regs = [Register("e" + n[1:], 32, "gpr", n, "int32") for n in order]
        regs[4:6] = [Register("e" + n[1:], 32, "gpr", n, "data_ptr") for n in ("rsp", "rbp")]
        regs.append(Register("eip", 32, "gpr", "rip", "code_ptr"))
    regs.append(Register("eflags", 32, "gpr", "rflags", "i386_eflags"))
    regs += [Register(s, 32, "seg", s, "int32") for s in _SEGMENTS]
    regs += [Register(f"st{i}", 80, "fpr", i, "i387_ext") for i in range(8)]
    regs += [Register(n, 32, "fpu", n, "int", "float") for n in _FPU_CONTROL]
    regs += [Register(f"xmm{i}", 128, "xmm", i, "vec128") for i in range(16 if wide else 8)]
    # KVM_GET_FPU does not carry MXCSR (only KVM_GET_XSAVE does): gdb shows it unavailable.
    regs.append(Register("mxcsr", 32, "absent", "mxcsr", "i386_mxcsr", "vector"))
    regs += [Register(n, 64, "cr", n, "int64", "system") for n in ("cr0", "cr2", "cr3", "cr4")]
    regs.append(Register("efer", 64, "cr", "efer", "int64", "system"))
    return Layout(architecture, tuple(regs))


X86_64 = _layout("i386:x86-64", wide=True)
I8086 = _layout("i8086", wide=False)


def layout_for(sregs) -> Layout:
    """The layout for a vCPU in this state: real mode gets gdb's 16-bit architecture."""
    return X86_64 if sregs.cr0 & X86_CR0_PE or sregs.efer & EFER_LMA else I8086


def _flags_xml(name: str, fields: list[tuple[str, int]]) -> str:
    body = "".join(f'<field name="{f}" start="{b}" end="{b}"/>' for f, b in fields)
    return f'<flags id="{name}" size="4">{body}</flags>'


_VEC128 = (
    '<vector id="v4f" type="ieee_single" count="4"/>'
    '<vector id="v2d" type="ieee_double" count="2"/>'
    '<vector id="v16i8" type="int8" count="16"/>'
    '<vector id="v8i16" type="int16" count="8"/>'
    '<vector id="v4i32" type="int32" count="4"/>'
    '<vector id="v2i64" type="int64" count="2"/>'
    '<union id="vec128"><field name="v4_float" type="v4f"/>'
    '<field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>'
    '<field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>'
    '<field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>'
)


def _target_xml(layout: Layout) -> str:
    features = {"core": [], "sse": [], "sys": []}
    for n, r in enumerate(layout.registers):
        where = (
            "sse" if r.kind == "xmm" or r.name == "mxcsr" else "sys" if r.kind == "cr" else "core"
        )
        group = f' group="{r.group}"' if r.group else ""
        features[where].append(
            f'<reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" regnum="{n}"{group}/>'
        )
    return (
        '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
        f"<target><architecture>{layout.architecture}</architecture><osabi>none</osabi>"
        '<feature name="org.gnu.gdb.i386.core">'
        + _flags_xml("i386_eflags", _EFLAGS_BITS)
        + "".join(features["core"])
        + '</feature><feature name="org.gnu.gdb.i386.sse">'
        + _VEC128
        + _flags_xml("i386_mxcsr", _MXCSR_BITS)
        + "".join(features["sse"])
        + '</feature><feature name="org.pyvmm.x86.system">'
        + "".join(features["sys"])
        + "</feature></target>"
    )


class RegisterFile:
    """A vCPU's registers read once (regs, sregs, FPU), encoded and decoded for gdb.

    Reads fetch lazily: a stop reply needs only RIP, ``g`` needs everything. Writes go
    straight back to KVM, so what gdb reads next is what the vCPU holds.
    """

    def __init__(self, vcpu, layout: Layout):
        self.vcpu = vcpu
        self.layout = layout
        self.regs = vcpu.get_regs()
        self._sregs = None
        self._fpu = None

    @property
    def sregs(self):
        if self._sregs is None:
            self._sregs = self.vcpu.get_sregs()
        return self._sregs

    @property
    def fpu(self):
        if self._fpu is None:
            self._fpu = self.vcpu.get_fpu()
        return self._fpu

    def read(self, n: int) -> str:
        """Register ``n`` in hex, little-endian; ``xx`` per byte when KVM does not say."""
        r = self.layout.registers[n]
        if r.kind == "absent":
            return "xx" * (r.bits // 8)
        return self._value(r).to_bytes(r.bits // 8, "little").hex()

    def read_all(self) -> str:
        return "".join(self.read(n) for n in range(len(self.layout.registers)))

    def _value(self, r: Register) -> int:
        mask = (1 << r.bits) - 1
        if r.kind == "gpr":
            return getattr(self.regs, r.key) & mask
        if r.kind == "seg":
            return getattr(self.sregs, r.key).selector
        if r.kind == "cr":
            return getattr(self.sregs, r.key)
        fpu = self.fpu
        if r.kind == "fpr":
            return int.from_bytes(bytes(fpu.fpr[r.key])[:10], "little")
        if r.kind == "xmm":
            return int.from_bytes(bytes(fpu.xmm[r.key]), "little")
        return {
            "fctrl": fpu.fcw,
            "fstat": fpu.fsw,
            # KVM keeps FXSAVE's abridged tag (a bit per register, 1 = in use); gdb
            # wants the full tag word (2 bits, 11 = empty). "Valid" stands for any use.
            "ftag": sum(0 if fpu.ftwx >> i & 1 else 3 << (2 * i) for i in range(8)),
            "fiseg": fpu.last_ip >> 32 & 0xFFFF,
            "fioff": fpu.last_ip & 0xFFFFFFFF,
            "foseg": fpu.last_dp >> 32 & 0xFFFF,
            "fooff": fpu.last_dp & 0xFFFFFFFF,
            "fop": fpu.last_opcode,
        }[r.key]

    def write(self, n: int, data: bytes) -> None:
        """Set register ``n`` from gdb's little-endian bytes; ValueError if it cannot be."""
        r = self.layout.registers[n]
        if r.kind == "absent":
            raise ValueError(f"{r.name} is not available")
        if len(data) != r.bits // 8:
            raise ValueError(f"{r.name} takes {r.bits // 8} bytes")
        value = int.from_bytes(data, "little")
        if value == self._value(r):
            return  # ``G`` writes every register back: unchanged ones cost nothing
        if r.kind == "gpr":
            setattr(self.regs, r.key, value)
            self.vcpu.set_regs(self.regs)
        elif r.kind == "seg":
            if self.sregs.cr0 & X86_CR0_PE:
                raise ValueError("segment registers can be set only in real mode")
            seg = getattr(self.sregs, r.key)
            seg.selector, seg.base = value & 0xFFFF, (value & 0xFFFF) << 4
            self.vcpu.set_sregs(self.sregs)
        elif r.kind == "cr":
            setattr(self.sregs, r.key, value)
            self.vcpu.set_sregs(self.sregs)
        elif r.kind in ("fpr", "xmm"):
            target = self.fpu.fpr[r.key] if r.kind == "fpr" else self.fpu.xmm[r.key]
            for i, b in enumerate(data):
                target[i] = b
            self.vcpu.set_fpu(self.fpu)
        elif r.key in ("fctrl", "fstat", "fop"):
            field = {"fctrl": "fcw", "fstat": "fsw", "fop": "last_opcode"}[r.key]
            setattr(self.fpu, field, value)
            self.vcpu.set_fpu(self.fpu)
        else:
            raise ValueError(f"{r.name} cannot be set")
