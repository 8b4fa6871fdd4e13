"""ELF64 parsing for the two static executables pyvmm loads: the guest kernel and the
ring-3 program the tiny kernel runs.

The file is untrusted input, so every header field is checked against the file size
before it is used (ELF spec: the ELF header, program headers, PT_LOAD segments).
"""

from __future__ import annotations

import struct

from vmm.errors import PyvmmError
from vmm.typedtuple import typed_tuple

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC = 2
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PF_X = 1

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
_NHDR = struct.Struct("<III")  # Elf64_Nhdr: namesz, descsz, type


class ElfError(PyvmmError):
    """An ELF file that pyvmm cannot or will not load."""


@typed_tuple
class Segment:
    """A PT_LOAD segment: ``filesz`` bytes from ``offset`` in the file at ``addr``, then zeros
    up to ``memsz``."""

    addr: int
    offset: int
    filesz: int
    memsz: int
    executable: bool


@typed_tuple
class Note:
    name: bytes  # without the NUL
    type: int
    desc: bytes


@typed_tuple
class ElfImage:
    entry: int
    segments: tuple[Segment, ...]

    @property
    def end(self) -> int:
        return max(s.addr + s.memsz for s in self.segments)


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse(data: bytes, name: str = "ELF file", entry: int | None = None) -> ElfImage:
    """Validate a static x86-64 ELF executable and return its entry point and segments.

    ``entry`` replaces the header's entry point, for a boot protocol that names its own
    (PVH's note gives a physical address; a vmlinux's e_entry is virtual).
    """
    if not is_elf(data):
        raise ElfError(f"{name} is not an ELF file (it does not start with 7f 45 4c 46)")
    if len(data) < _EHDR.size:
        raise ElfError(f"{name} is truncated: {len(data)} bytes, shorter than an ELF header")
    (
        ident,
        e_type,
        e_machine,
        _ver,
        e_entry,
        phoff,
        _shoff,
        _flags,
        _ehsize,
        phentsize,
        phnum,
        _shentsize,
        _shnum,
        _shstrndx,
    ) = _EHDR.unpack_from(data)
    entry = e_entry if entry is None else entry
    if ident[4] != ELFCLASS64:
        raise ElfError(f"{name} is a 32-bit ELF; pyvmm loads 64-bit (ELFCLASS64) executables")
    if ident[5] != ELFDATA2LSB:
        raise ElfError(f"{name} is big-endian; x86-64 is little-endian")
    if e_machine != EM_X86_64:
        raise ElfError(f"{name} is for machine {e_machine}, not x86-64 ({EM_X86_64})")
    if e_type != ET_EXEC:
        raise ElfError(f"{name} is not a static executable (ELF type {e_type}, want ET_EXEC)")
    if phentsize != _PHDR.size or phnum == 0:
        raise ElfError(f"{name} has no usable program headers")
    if phoff + phnum * phentsize > len(data):
        raise ElfError(f"{name} is truncated: its program headers run past the end of the file")
    segments = []
    for i in range(phnum):
        p_type, p_flags, offset, _vaddr, paddr, filesz, memsz, _align = _PHDR.unpack_from(
            data, phoff + i * phentsize
        )
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz:
            raise ElfError(f"{name}: segment {i} has more file bytes than memory bytes")
        if offset + filesz > len(data):
            raise ElfError(f"{name} is truncated: segment {i} runs past the end of the file")
        segments.append(Segment(paddr, offset, filesz, memsz, bool(p_flags & PF_X)))
    if not segments:
        raise ElfError(f"{name} has no loadable (PT_LOAD) segment")
    if not any(s.executable and s.addr <= entry < s.addr + s.memsz for s in segments):
        raise ElfError(f"{name}: entry point {entry:#x} is not inside an executable segment")
    return ElfImage(entry, tuple(segments))


def notes(data: bytes, name: str = "ELF file") -> list[Note]:
    """The notes of every PT_NOTE segment (ELF spec, "Note Section"), each checked to lie
    inside its segment, which must lie inside the file. Headers ``parse`` would refuse
    give no notes here: ``parse`` says what is wrong with them."""
    if len(data) < _EHDR.size:
        return []
    header = _EHDR.unpack_from(data)
    phoff, phentsize, phnum = header[5], header[9], header[10]
    if phentsize != _PHDR.size or phoff + phnum * phentsize > len(data):
        return []
    found = []
    for i in range(phnum):
        p_type, _f, offset, _v, _p, filesz, _m, _a = _PHDR.unpack_from(data, phoff + i * _PHDR.size)
        if p_type != PT_NOTE:
            continue
        end = offset + filesz
        if end > len(data):
            raise ElfError(f"{name} is truncated: note segment {i} runs past the end of the file")
        at = offset
        while at + _NHDR.size <= end:
            namesz, descsz, n_type = _NHDR.unpack_from(data, at)
            name_at = at + _NHDR.size
            desc_at = name_at + _align4(namesz)
            next_at = desc_at + _align4(descsz)
            if next_at > end:
                raise ElfError(f"{name}: a note runs past the end of note segment {i}")
            found.append(Note(data[name_at : name_at + namesz].rstrip(b"\0"), n_type,
                              data[desc_at : desc_at + descsz]))  # fmt: skip
            at = next_at
    return found
