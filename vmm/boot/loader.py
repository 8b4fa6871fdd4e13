"""Put a kernel into guest memory and say how the first vCPU starts.

Formats are told apart by their contents, never by trusting a name alone:
- an ELF64 executable with a PVH entry note: a Linux vmlinux, booted by the PVH
  protocol (``pvh.py``);
- a Linux bzImage ("HdrS" in its setup header), booted by the 64-bit boot protocol
  (``bzimage.py``);
- any other ELF64 executable (the tiny guest kernel), entered in long mode with the
  boot-info block in RDI;
- a flat 16-bit binary (the labs), recognised by the PC boot-sector signature or a
  ``.bin`` name, started in real mode.
"""

from __future__ import annotations

from vmm.boot import bzimage, elf, layout, mptable, pvh
from vmm.boot.bootinfo import BOOT_FLAG_INTERRUPTS, BootInfo, VirtioSlot
from vmm.boot.x86 import CpuStart, write_boot_gdt, write_page_tables
from vmm.errors import PyvmmError
from vmm.inputfile import read_input
from vmm.memory import GuestMemory
from vmm.typedtuple import typed_tuple

BOOT_SIGNATURE = b"\x55\xaa"  # last two bytes of a PC boot sector
LINUX_FORMATS = ("pvh", "bzimage")
APIC_WINDOW = 0x1000  # a local APIC's or an IOAPIC's registers: one page (SDM vol. 3, 11.4.1)


class KernelError(PyvmmError):
    """A kernel or program file that cannot be loaded; the message says which and why."""


@typed_tuple
class BootRequest:
    kernel: str
    cmdline: str = ""
    program: str | None = None
    real_mode_load: int = layout.REAL_MODE_LOAD
    virtio: tuple[VirtioSlot, ...] = ()
    initrd: str | None = None
    cpus: int = 1  # Linux learns of them from the MP table
    interrupts: bool = False  # the tiny kernel takes interrupts rather than polling


@typed_tuple
class KernelImage:
    """A kernel file read and recognised: ``format`` is one of "elf", "pvh", "bzimage",
    "flat"; ``pvh_entry`` is the PVH entry point of a "pvh" image."""

    path: str
    data: bytes
    format: str
    pvh_entry: int | None = None

    @property
    def linux(self) -> bool:
        return self.format in LINUX_FORMATS


def read_file(path: str, what: str, memory: GuestMemory) -> bytes:
    """A kernel, program or other file to put in guest memory: more than fits is refused
    before it is read (vmm/inputfile.py checks the file's kind and bounds the read)."""
    data = read_input(path, what, memory.size, "guest memory")
    if not data:
        raise KernelError(f"{what} {path!r} is empty")
    return data


def kernel_format(data: bytes, path: str) -> str:
    if elf.is_elf(data):
        return "elf"
    if bzimage.is_bzimage(data):
        return "bzimage"
    if data[510:512] == BOOT_SIGNATURE or path.endswith(".bin"):
        return "flat"
    raise KernelError(
        f"{path!r} is of unknown format: not an ELF64 kernel, a Linux bzImage, nor a flat "
        "binary (a boot sector ending in 55 aa, or a .bin file)"
    )


def open_kernel(path: str, memory: GuestMemory) -> KernelImage:
    """Read the kernel file and tell its format, an ELF's PVH note included."""
    data = read_file(path, "kernel", memory)
    fmt = kernel_format(data, path)
    if fmt == "elf":
        name = f"kernel {path!r}"
        entry = pvh.entry_point(data, name)
        if entry is not None:
            return KernelImage(path, data, "pvh", entry)
    return KernelImage(path, data, fmt)


def load(memory: GuestMemory, request: BootRequest, image: KernelImage | None = None) -> CpuStart:
    image = image or open_kernel(request.kernel, memory)
    initrd = read_file(request.initrd, "initrd", memory) if request.initrd else None
    if initrd is not None and not image.linux:
        raise KernelError(f"--initrd is for Linux kernels; {request.kernel!r} is not one")
    name = f"kernel {request.kernel!r}"
    if image.linux:
        mptable.write(memory, request.cpus)
    if image.format == "pvh":
        return pvh.load(memory, image.data, name, image.pvh_entry, request.cmdline, initrd)
    if image.format == "bzimage":
        return bzimage.load(memory, image.data, name, request.cmdline, initrd)
    if image.format == "flat":
        return _load_flat(memory, image.data, request)
    return _load_elf_kernel(memory, image.data, request)


def _load_flat(memory: GuestMemory, data: bytes, request: BootRequest) -> CpuStart:
    base = request.real_mode_load
    if base + len(data) > min(layout.REAL_MODE_TOP, memory.size):
        raise KernelError(
            f"{request.kernel!r} ({len(data)} bytes at {base:#x}) does not fit in the "
            f"real-mode memory below {layout.REAL_MODE_TOP:#x}"
        )
    memory.write(base, data)
    # Pages for the lab to build its own long-mode tables on are its own business;
    # the VMM only loads the bytes, as a BIOS loads a boot sector.
    return CpuStart(long_mode=False, rip=base, rsp=base)


def _check_fits(memory: GuestMemory, addr: int, size: int, what: str, path: str) -> None:
    if (
        addr < layout.KERNEL_MIN
        or not memory.contains(addr, size)
        or addr + size > layout.LOW_RAM_END
    ):
        raise KernelError(
            f"{what} of {path!r} at {addr:#x}+{size:#x} does not fit in guest memory "
            f"({memory.size >> 20} MiB; loadable from {layout.KERNEL_MIN:#x})"
        )


def _load_elf_kernel(memory: GuestMemory, data: bytes, request: BootRequest) -> CpuStart:
    image = elf.parse(data, f"kernel {request.kernel!r}")
    for i, seg in enumerate(image.segments):
        _check_fits(memory, seg.addr, seg.memsz, f"segment {i}", request.kernel)
        # Fresh guest memory is anonymous and already zero, so only file bytes are copied.
        memory.write(seg.addr, data[seg.offset : seg.offset + seg.filesz])

    cmdline = request.cmdline.encode()
    if len(cmdline) > layout.CMDLINE_MAX:
        raise KernelError(f"command line is {len(cmdline)} bytes; at most {layout.CMDLINE_MAX}")
    memory.write(layout.CMDLINE, cmdline + b"\0")

    program_addr = program_size = 0
    if request.program:
        program_addr, program_size = _place_program(memory, request.program, floor=image.end)
    write_boot_gdt(memory)
    # RAM, and the device windows the kernel will touch.
    mapped = [(r.gpa, r.end) for r in memory.regions]
    mapped += [(slot.base, slot.base + slot.size) for slot in request.virtio]
    # The interrupt controllers, where KVM's in-kernel irqchip answers: the kernel
    # starts other CPUs and takes interrupts through them.
    mapped += [(mptable.LAPIC_ADDRESS, mptable.LAPIC_ADDRESS + APIC_WINDOW)]
    mapped += [(mptable.IOAPIC_ADDRESS, mptable.IOAPIC_ADDRESS + APIC_WINDOW)]
    info = BootInfo(
        mem_size=memory.size,
        low_mem_end=memory.regions[0].end,
        cmdline_addr=layout.CMDLINE,
        cmdline_len=len(cmdline),
        program_addr=program_addr,
        program_size=program_size,
        page_tables=write_page_tables(memory, mapped),
        mmio_base=layout.MMIO_BASE,
        virtio=request.virtio,
        nr_cpus=request.cpus,
        flags=BOOT_FLAG_INTERRUPTS if request.interrupts else 0,
    )
    memory.write(layout.BOOT_INFO, info.pack())
    return CpuStart(
        long_mode=True, rip=image.entry, rsp=layout.BOOT_STACK_TOP, rdi=layout.BOOT_INFO
    )


def _place_program(memory: GuestMemory, path: str, floor: int) -> tuple[int, int]:
    """Copy the ring-3 program's file to the top of low RAM, where the kernel will find it.

    The kernel copies its segments to their own addresses and puts the user stack in the
    2 MiB just below the file, so all of that must lie above the kernel and the segments.
    """
    data = read_file(path, "program", memory)
    program = elf.parse(data, f"program {path!r}")
    low_end = memory.regions[0].end
    addr = (low_end - len(data)) // layout.PROGRAM_ALIGN * layout.PROGRAM_ALIGN
    lowest_free = max(floor, program.end, layout.KERNEL_MIN)
    if addr - layout.PROGRAM_ALIGN < lowest_free or program.segments[0].addr < floor:
        raise KernelError(
            f"program {path!r} does not fit in guest memory ({memory.size >> 20} MiB) "
            "beside the kernel: give the guest more --memory"
        )
    memory.write(addr, data)
    return addr, len(data)
