"""Lab 17's checks: the student's page walk agrees with KVM_TRANSLATE.

Each check builds guest memory with page tables of its own (at random pages, with
random indices and frames, so that no hard-coded answer and no walk that reads the
wrong bits can pass), runs the student's walk.py on it, and asks KVM the same question
on a vCPU in long mode with that CR3: the CPU's own walk is the judge.
"""

import random
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from vmm.boot.x86 import (
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PAGE_SIZE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITE,
    enter_long_mode,
)
from vmm.course.labs import Check, CheckFailed, run_student, tail
from vmm.kvm import Kvm
from vmm.memory import GuestMemory

TITLE = "Memory virtualization: walk the guest's page tables"
CONCEPT = "4-level paging seen from the VMM: CR3, the index bits, present, large pages"
NEEDS = ("kvm",)
FILES = ("walk.py",)

MEMORY_SIZE = 2 << 20  # the tables live in the first 2 MiB of guest memory
PAGE = 4096
EFER_NXE = 1 << 11  # SDM vol. 3A, 2.2.1: bit 63 of an entry is XD, not reserved
CR3_PWT = 1 << 3  # SDM vol. 3A, 4.5.2: CR3's low bits are cache control, not address
CPUID_EXT = 0x80000001  # EDX bit 26: Page1GB, 1 GiB pages (SDM vol. 2A, CPUID)
PAGE_1GB = 1 << 26
PTE_PAT = 1 << 12  # in a large page's entry: the PAT bit, not an address bit
PTE_NX = 1 << 63
MAX_FRAME_BITS = 36  # frames below 64 GiB, above 4 GiB: no x86-64 CPU has a MAXPHYADDR under 36
TABLES = ("PML4", "PDPT", "PD", "PT")


@dataclass(frozen=True)
class Case:
    linear: int
    what: str  # how the check mapped it, for the failure message
    kind: str  # "4k", "absent" or "large"


def _noise(rng: random.Random) -> int:
    """Bits a walk must not take for address: software-available bits 11-9 and 62-52,
    NX, and the access bits."""
    avl = rng.getrandbits(3) << 9 | rng.getrandbits(11) << 52
    return avl | rng.choice((0, PTE_NX)) | PTE_WRITE | PTE_USER | PTE_ACCESSED


def _linear(path: tuple[int, ...], offset: int) -> int:
    """The canonical address with these indices: bit 47 copied up to bit 63."""
    address = offset
    for index, shift in zip(path, (39, 30, 21, 12), strict=False):
        address |= index << shift
    return address | (0xFFFF << 48 if address >> 47 & 1 else 0)


class World:
    """Guest memory holding one set of page tables, and the addresses to ask about."""

    def __init__(self, gib_pages: bool, seed: int):
        self.rng = random.Random(seed)
        self.memory = GuestMemory.flat(MEMORY_SIZE)
        self.free = self.rng.sample(range(1, MEMORY_SIZE // PAGE), MEMORY_SIZE // PAGE - 1)
        self.tables: dict[tuple[int, ...], int] = {(): self._page()}
        self.cr3 = self.tables[()] | CR3_PWT
        self.gib_pages = gib_pages
        self.cases: list[Case] = []
        mapped = [self._page_4k() for _ in range(6)]
        for level, path in enumerate(mapped[:4]):
            self._absent_beside(path, level)
        self._case(_linear((self._unused(()),), 0x123), "PML4 entry all zero", "absent")
        for pat in (PTE_PAT, 0, PTE_PAT):
            self._large(2, pat)
        for pat in (PTE_PAT, 0):
            self._large(1, pat)

    def _case(self, linear: int, what: str, kind: str) -> None:
        self.cases.append(Case(linear, what, kind))

    def _page(self) -> int:
        return self.free.pop() * PAGE

    def _table(self, path: tuple[int, ...]) -> int:
        """The table reached through ``path``'s indices, made (present) as needed."""
        if path not in self.tables:
            parent = self._table(path[:-1])
            self.tables[path] = self._page()
            entry = self.tables[path] | PTE_PRESENT | _noise(self.rng) & ~PTE_NX
            self.memory.write_u64(parent + 8 * path[-1], entry)
        return self.tables[path]

    def _unused(self, path: tuple[int, ...]) -> int:
        """An index whose entry in ``path``'s table is still zero."""
        table = self._table(path)
        while True:
            index = self.rng.randrange(512)
            if not self.memory.read_u64(table + 8 * index):
                return index

    def _reuse_or_new(self, path: tuple[int, ...]) -> tuple[int, ...]:
        """One more index under ``path``: half the time an existing table's, so that
        tables are shared as in a real guest."""
        known = [p[-1] for p in self.tables if len(p) == len(path) + 1 and p[:-1] == path]
        if known and self.rng.random() < 0.5:
            return (*path, self.rng.choice(known))
        return (*path, self._unused(path))

    def _page_4k(self) -> tuple[int, ...]:
        path: tuple[int, ...] = ()
        for _ in range(3):
            path = self._reuse_or_new(path)
        index = self._unused(path)
        frame = self.rng.randrange(1, 1 << (MAX_FRAME_BITS - 12)) << 12
        entry = frame | PTE_PRESENT | PTE_DIRTY | _noise(self.rng)
        self.memory.write_u64(self._table(path) + 8 * index, entry)
        path = (*path, index)
        where = " ".join(f"{t}[{i}]" for t, i in zip(TABLES, path, strict=True))
        self._case(_linear(path, self.rng.randrange(PAGE)), f"a 4 KiB page via {where}", "4k")
        return path

    def _absent_beside(self, path: tuple[int, ...], level: int) -> None:
        """Beside entry ``level`` of a mapped page's walk, a copy of it with P clear:
        a walk that ignores P finds that page, the CPU finds nothing."""
        table = self._table(path[:level])
        entry = self.memory.read_u64(table + 8 * path[level])
        index = self._unused(path[:level])
        self.memory.write_u64(table + 8 * index, entry & ~PTE_PRESENT)
        linear = _linear((*path[:level], index, *path[level + 1 :]), self.rng.randrange(PAGE))
        self._case(linear, f"{TABLES[level]}[{index}] holds an address but P is clear", "absent")

    def _large(self, depth: int, pat: int) -> None:
        """A 2 MiB page (a PD entry, ``depth`` 2) or a 1 GiB page (a PDPT entry, 1); with
        ``pat``, the PAT bit set and the address's bit 12 clear, so that a walk taking
        PAT for an address bit shows it."""
        path: tuple[int, ...] = ()
        for _ in range(depth):
            path = self._reuse_or_new(path)
        index = self._unused(path)
        shift = 30 if depth == 1 else 21
        frame = self.rng.randrange(1, 1 << (MAX_FRAME_BITS - shift)) << shift
        entry = frame | pat | PTE_PRESENT | PTE_PAGE_SIZE | PTE_DIRTY | _noise(self.rng)
        self.memory.write_u64(self._table(path) + 8 * index, entry)
        what = f"a {'1 GiB' if depth == 1 else '2 MiB'} page{', PAT set' if pat else ''}"
        if depth == 1 and not self.gib_pages:
            what += ", on a CPU without Page1GB"
        offset = self.rng.randrange(1 << shift) & ~pat
        self._case(_linear((*path, index), offset), what, "large")

    def kvm_answers(self) -> dict[int, str]:
        """What KVM_TRANSLATE says for every case, on a vCPU in long mode with our CR3."""
        kvm = Kvm()
        vm = kvm.create_vm()
        try:
            vm.set_memory(0, MEMORY_SIZE, self.memory.regions[0].host_address)
            vcpu = vm.create_vcpu(0)
            vcpu.set_cpuid(kvm.supported_cpuid())
            enter_long_mode(vcpu, self.cr3)
            sregs = vcpu.get_sregs()
            sregs.efer |= EFER_NXE
            vcpu.set_sregs(sregs)
            answers = {c.linear: vcpu.translate(c.linear) for c in self.cases}
        finally:
            vm.close()
            kvm.close()
        return {k: "unmapped" if v is None else hex(v) for k, v in answers.items()}


def _gib_pages() -> bool:
    """Whether KVM gives a guest 1 GiB pages (this machine's PVM does not)."""
    kvm = Kvm()
    try:
        cpuid = kvm.supported_cpuid()
        return any(
            e.function == CPUID_EXT and e.edx & PAGE_1GB
            for e in (cpuid.entries[i] for i in range(cpuid.nent))
        )
    finally:
        kvm.close()


def _compare(workdir: Path, kind: str) -> str:
    gib_pages = _gib_pages()
    world = World(gib_pages, secrets.randbits(64))
    cases = [c for c in world.cases if c.kind == kind]
    (workdir / "memory.bin").write_bytes(world.memory.read(0, MEMORY_SIZE))
    args = ["walk.py", *(["--gib-pages"] if gib_pages else []), "memory.bin", hex(world.cr3)]
    proc = run_student([*args, *(hex(c.linear) for c in cases)], workdir, timeout=30)
    said = dict(re.findall(r"^(0x[0-9a-f]+) -> (.*)$", proc.stdout, re.M))
    kvm = world.kvm_answers()
    wrong = [
        f"{c.linear:#x} ({c.what}): your walk says {said.get(hex(c.linear), 'nothing')}, "
        f"KVM_TRANSLATE {kvm[c.linear]}"
        for c in cases
        if said.get(hex(c.linear)) != kvm[c.linear]
    ]
    if wrong:
        shown = "\n".join(f"      {w}" for w in wrong[:3])
        more = f"\n      ... and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        output = f"\n{tail(proc, 4)}" if proc.returncode else ""
        raise CheckFailed(f"{len(wrong)} of {len(cases)} differ:\n{shown}{more}{output}")
    return f"{len(cases)} addresses, each as KVM_TRANSLATE translates it"


CHECKS = [
    Check(
        "each level's 9 index bits lead to the 4 KiB page KVM_TRANSLATE finds",
        "bits 47-39 index the PML4, 38-30 the PDPT, 29-21 the PD, 20-12 the PT; the next "
        "address is an entry's bits 51-12 (63 is NX, 62-52 and 11-9 are free for software: "
        "mask them off), and CR3's low bits are not address either",
        lambda workdir: _compare(workdir, "4k"),
    ),
    Check(
        "an entry whose present bit is clear maps nothing, whatever else it holds",
        "test bit 0 (P) of every entry before you follow it, at every level",
        lambda workdir: _compare(workdir, "absent"),
    ),
    Check(
        "the PS bit ends the walk: 2 MiB pages, and 1 GiB pages where the CPU has them",
        "bit 7 (PS) in a PD or PDPT entry: the page's address is bits 51-21 (51-30) of the "
        "entry, bit 12 there being PAT; without Page1GB, PS in a PDPT entry is reserved "
        "and the address does not translate",
        lambda workdir: _compare(workdir, "large"),
    ),
]
