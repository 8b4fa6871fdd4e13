"""A VM's whole state on disk, and a new pyvmm process going on from it (docs/state.md).

A snapshot is a directory of three files:

    manifest.json  the typed, versioned record (``Manifest``): what each part is and where
                   it lies, the general registers by name, the MSRs, the devices' state
    state.bin      the kernel's structs for each vCPU and for the VM, as KVM filled them
                   (sizes from the compiler); its SHA-256 is in the manifest
    memory         guest RAM, the regions one after the other, a sparse file: holes where
                   the guest never wrote

Saving runs on the paused vCPU's thread (vmm/control/pause.py). Loading checks everything
before anything is mapped or handed to KVM: the format and version, every field's type,
the memory layout against pyvmm's own, the file sizes, the state's digest, each
struct's size; any fault is one line and exit status 2. Memory is guest data, untrusted
like everything the guest writes, and is not hashed (as in Firecracker): reading 64 MiB
to hash it would cost more than the restore. The manifest is plain JSON on purpose: a
student may change a register in it and see the guest go on with the change.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from vmm import record
from vmm.boot import layout
from vmm.devices.serial_state import SerialState
from vmm.devices.virtio.mmio import VirtioMmioState
from vmm.errors import PyvmmError
from vmm.kvm import state as kvmstate

SNAPSHOT_FORMAT = "pyvmm-snapshot"
# Bump when the manifest's fields or their meaning change: another version is refused.
SNAPSHOT_VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.bin"
MEMORY = "memory"
MAX_MANIFEST = 1 << 20  # a manifest is a few KiB; a larger file is not one of ours
MAX_STATE = 1 << 24


class SnapshotError(PyvmmError):
    """A snapshot that cannot be used (or made): the message says which part and why."""


@dataclass
class Blob:
    """A run of bytes in state.bin."""

    offset: int
    size: int


@dataclass
class RegionRecord:
    """A run of guest RAM: where the guest sees it, and where it is in the memory file."""

    gpa: int
    size: int
    offset: int


@dataclass
class VcpuRecord:
    index: int
    regs: dict[str, int]  # the general registers by name: rax ... rip, rflags
    msrs: dict[str, int]  # MSR index (hex) to value, every one KVM let us read
    msrs_refused: list[int]  # in KVM's list, but KVM_GET_MSRS refused them (docs/state.md)
    cpuid: Blob  # struct kvm_cpuid2 with its entries
    parts: dict[str, Blob]  # kvm/state.py's VCPU_PARTS: sregs, xsave, lapic, ...


@dataclass
class DiskRecord:
    """A disk is reattached by path; its size must be what the guest saw."""

    path: str
    readonly: bool
    sectors: int
    transport: VirtioMmioState


@dataclass
class Manifest:
    format: str
    version: int
    created: float  # seconds since the epoch
    linux: bool  # a Linux guest (its final halt is watched for)
    irqchip: bool  # KVM's in-kernel PIC, IOAPIC and local APIC
    memory: list[RegionRecord]
    memory_file_size: int
    state_size: int
    state_sha256: str
    vm: dict[str, Blob]  # kvm/state.py's VM_PARTS: pic_master, pic_slave, ioapic, pit, clock
    vcpus: list[VcpuRecord]
    serial: SerialState
    disks: list[DiskRecord]


# --- saving -------------------------------------------------------------------------


class _StateWriter:
    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, data: bytes) -> Blob:
        blob = Blob(len(self.data), len(data))
        self.data += data
        return blob


def check_savable(machine) -> None:
    """Refuse a VM whose state a snapshot does not hold: a network card's TAP lives in
    the host, and frames in flight on it would be lost or sent twice (Firecracker
    reattaches a TAP by name; pyvmm does not yet)."""
    if machine.nets:
        raise SnapshotError(
            "a VM with a network card (--net) cannot be saved or migrated: "
            "its TAP is not part of a snapshot"
        )


def save(machine, directory: str, on_vcpu: Callable[[int, Callable], object]) -> dict:
    """Write ``machine``'s state into ``directory`` (made here; it must not exist), every
    vCPU paused (``capture``). Returns figures for the caller to report."""
    check_savable(machine)
    started = time.perf_counter()
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise SnapshotError(
            f"{directory} already exists: a snapshot goes into a new directory"
        ) from None
    except OSError as e:
        raise SnapshotError(f"cannot make {directory}: {e.strerror}") from None
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for transport in machine.disks:
            transport.drain()
        manifest, state = capture(machine, on_vcpu)
        memory_written = _write_in(dir_fd, MEMORY, machine.memory.dump)
        _write_in(dir_fd, STATE, _all(state))
        # The manifest last: a directory without one is not a snapshot.
        text = (json.dumps(record.to_json(manifest), indent=1) + "\n").encode()
        _write_in(dir_fd, MANIFEST, _all(text))
    except BaseException as e:
        # Nothing half-written is left behind (a full disk, an interrupted save).
        for name in (MANIFEST, STATE, MEMORY):
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
        os.rmdir(directory)
        if isinstance(e, OSError):
            raise SnapshotError(f"cannot write the snapshot in {directory}: {e.strerror}") from None
        raise
    finally:
        os.close(dir_fd)
    return {
        "directory": os.path.abspath(directory),
        "memory_bytes": manifest.memory_file_size,
        "memory_written": memory_written,
        "state_bytes": len(state),
        "seconds": round(time.perf_counter() - started, 4),
    }


def _write_in(dir_fd: int, name: str, write) -> int:
    """A new file ``name`` in the snapshot's directory, filled by ``write(fd)``."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)  # fmt: skip
    try:
        return write(fd)
    finally:
        os.close(fd)


def _all(data: bytes):
    """A writer of every byte of ``data`` (write(2) may take fewer at a time)."""

    def write(fd: int) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return len(data)

    return write


def _read_vcpu(vcpu, msr_list: list[int]) -> tuple[dict, dict, list, bytes, dict[str, bytes]]:
    """One paused vCPU's state, read on its own thread: (regs, MSRs, MSRs refused,
    CPUID, the other parts)."""
    msrs, refused = kvmstate.read_msrs(vcpu, msr_list)
    parts = {name: kvmstate.get_vcpu_part(vcpu, name) for name in kvmstate.vcpu_parts(vcpu)}
    return kvmstate.get_regs(vcpu), msrs, refused, kvmstate.get_cpuid(vcpu), parts


def capture(machine, on_vcpu: Callable[[int, Callable], object]) -> tuple[Manifest, bytes]:
    """The manifest and state.bin's bytes for ``machine``, every vCPU paused;
    ``on_vcpu(index, job)`` runs ``job`` on vCPU ``index``'s thread (``PauseGate.call``)."""
    out = _StateWriter()
    vm = machine.vm
    vm_parts = {name: out.add(kvmstate.get_vm_part(vm, name)) for name in kvmstate.vm_parts(vm)}
    msr_list = kvmstate.msr_index_list(machine.kvm)
    vcpus = []
    for vcpu in machine.vcpus:
        regs, msrs, refused, cpuid, parts = on_vcpu(
            vcpu.index, lambda v=vcpu: _read_vcpu(v, msr_list)
        )
        vcpus.append(
            VcpuRecord(
                index=vcpu.index,
                regs=regs,
                msrs={f"{index:#x}": value for index, value in msrs.items()},
                msrs_refused=refused,
                cpuid=out.add(cpuid),
                parts={name: out.add(data) for name, data in parts.items()},
            )
        )
    regions, offset = [], 0
    for r in machine.memory.regions:
        regions.append(RegionRecord(r.gpa, r.size, offset))
        offset += r.size
    disks = [
        DiskRecord(t.device.path, t.device.readonly, t.device.capacity, t.save())
        for t in machine.disks
    ]
    manifest = Manifest(
        format=SNAPSHOT_FORMAT,
        version=SNAPSHOT_VERSION,
        created=time.time(),
        linux=machine.linux,
        irqchip=vm.has_irqchip,
        memory=regions,
        memory_file_size=offset,
        state_size=len(out.data),
        state_sha256=hashlib.sha256(out.data).hexdigest(),
        vm=vm_parts,
        vcpus=vcpus,
        serial=machine.serial.save(),
        disks=disks,
    )
    return manifest, bytes(out.data)


# --- loading ------------------------------------------------------------------------


def _open_in(dir_fd: int, name: str, what: str) -> int:
    """A file of the snapshot, opened without following a link and checked regular."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)  # fmt: skip
    except FileNotFoundError:
        raise SnapshotError(f"the snapshot has no {name} ({what})") from None
    except OSError as e:
        raise SnapshotError(f"cannot open the snapshot's {name}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SnapshotError(f"the snapshot's {name} is not a regular file")
    return fd


def _read_all(fd: int, limit: int, name: str) -> bytes:
    data = bytearray()
    while chunk := os.read(fd, limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            raise SnapshotError(f"the snapshot's {name} is larger than {limit} bytes")
    return bytes(data)


def parse_manifest(text: bytes) -> Manifest:
    """The manifest, its version checked before its fields (another version's differ)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise SnapshotError(f"{MANIFEST} is not JSON ({e}): truncated or damaged?") from None
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{MANIFEST} is not a pyvmm snapshot's")
    if data.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"the snapshot is format version {data.get('version')!r}; this pyvmm reads "
            f"version {SNAPSHOT_VERSION} only"
        )
    try:
        return record.from_json(data, Manifest, MANIFEST, unknown="refuse")
    except record.RecordError as e:
        raise SnapshotError(str(e)) from None


def check_layout(regions: list[RegionRecord]) -> int:
    """The memory regions must be exactly pyvmm's layout for their total size, laid
    end to end in the file; returns the total. Checked before anything is mapped."""
    total = sum(r.size for r in regions)
    if not 1 << 20 <= total <= layout.MAX_MEMORY or total % mmap.PAGESIZE:
        raise SnapshotError(f"{MANIFEST}: memory size {total} is not one pyvmm makes")
    expected = layout.ram_regions(total)
    got = [(r.gpa, r.size) for r in regions]
    offsets = [r.offset for r in regions]
    starts = [sum(size for _, size in expected[:i]) for i in range(len(expected))]
    if got != expected or offsets != starts:
        raise SnapshotError(f"{MANIFEST}: the memory regions are not pyvmm's layout")
    return total


def _check_blob(blob: Blob, state: bytes, name: str, size: int | None = None) -> bytes:
    if blob.offset < 0 or blob.size < 0 or blob.offset + blob.size > len(state):
        raise SnapshotError(f"{MANIFEST}: {name} lies outside {STATE}")
    if size is not None and blob.size != size:
        raise SnapshotError(
            f"{name} is {blob.size} bytes, this pyvmm's KVM struct is {size}: "
            "a snapshot from another build"
        )
    return state[blob.offset : blob.offset + blob.size]


def _check_manifest(manifest: Manifest, state: bytes) -> None:
    from vmm.vm.machine import MAX_CPUS

    if not 1 <= len(manifest.vcpus) <= MAX_CPUS:
        raise SnapshotError(f"{MANIFEST}: {len(manifest.vcpus)} vCPUs (1 to {MAX_CPUS})")
    if [v.index for v in manifest.vcpus] != list(range(len(manifest.vcpus))):
        raise SnapshotError(f"{MANIFEST}: the vCPUs are not numbered 0, 1, ... in order")
    if len(manifest.disks) > 4:
        raise SnapshotError(f"{MANIFEST}: more than four disks")
    for name, blob in manifest.vm.items():
        if name not in kvmstate.VM_PARTS:
            raise SnapshotError(f"{MANIFEST}: unknown VM part {name!r}")
        _check_blob(blob, state, name, kvmstate.part_size(name))
    for vcpu in manifest.vcpus:
        if set(vcpu.regs) != set(kvmstate.REGISTERS):
            raise SnapshotError(f"{MANIFEST}: vCPU {vcpu.index}'s regs are not rax ... rflags")
        if any(not 0 <= v < 1 << 64 for v in (*vcpu.regs.values(), *vcpu.msrs.values())):
            raise SnapshotError(f"{MANIFEST}: a register of vCPU {vcpu.index} is not 64-bit")
        for index in vcpu.msrs:
            try:
                if not 0 <= int(index, 16) < 1 << 32:
                    raise ValueError
            except ValueError:
                raise SnapshotError(f"{MANIFEST}: {index!r} is not an MSR number") from None
        _check_blob(vcpu.cpuid, state, "cpuid")
        for name, blob in vcpu.parts.items():
            if name not in kvmstate.VCPU_PARTS:
                raise SnapshotError(f"{MANIFEST}: unknown vCPU part {name!r}")
            _check_blob(blob, state, name, kvmstate.part_size(name))
        if "sregs" not in vcpu.parts:
            raise SnapshotError(f"{MANIFEST}: vCPU {vcpu.index} has no sregs")


class SavedVm:
    """A snapshot checked and ready: hand it to ``Machine`` (``MachineConfig.restore``)."""

    def __init__(self, manifest: Manifest, state: bytes, memory_fd=None, memory=None):
        """Guest RAM comes from a snapshot's memory file (``memory_fd``) or is already
        filled (``memory``, a GuestMemory: a migration's)."""
        self.manifest = manifest
        self.state = state
        self._memory_fd = memory_fd
        self._memory = memory
        self.linux = manifest.linux
        self.irqchip = manifest.irqchip
        # Called once the machine holds the state: a migration's source may then stop.
        self.on_restored = None

    @property
    def memory_size(self) -> int:
        return self.manifest.memory_file_size

    def adopt_memory_file(self, fd: int) -> None:
        """The snapshot's memory file, opened and checked; closed with this SavedVm."""
        self._memory_fd = fd

    def take_memory(self):
        """Guest RAM mapped MAP_PRIVATE from the memory file; the mapping owns the file."""
        from vmm.memory import GuestMemory

        if self._memory is not None:
            memory, self._memory = self._memory, None
            return memory
        fd, self._memory_fd = self._memory_fd, None
        regions = [(r.gpa, r.size) for r in self.manifest.memory]
        return GuestMemory(regions, file=fd)

    def machine_config(self, output):
        from vmm.vm.machine import MachineConfig

        disks = tuple((d.path, d.readonly) for d in self.manifest.disks)
        return MachineConfig(
            "", self.memory_size, output=output, disks=disks, cpus=len(self.manifest.vcpus),
            restore=self,
        )  # fmt: skip

    def restore_into(self, machine) -> None:
        """Put the saved state into a machine built with the same memory and devices."""
        m, state = self.manifest, self.state
        try:
            for disk, transport in zip(m.disks, machine.disks, strict=True):
                if disk.sectors != transport.device.capacity:
                    raise SnapshotError(
                        f"disk {disk.path} has {transport.device.capacity} sectors; the "
                        f"snapshot's guest saw {disk.sectors}"
                    )
                transport.restore(disk.transport)
            machine.serial.restore(m.serial)
            for name in kvmstate.VM_PARTS:  # the chips' state before the vCPUs': as QEMU
                if name in m.vm:
                    kvmstate.set_vm_part(machine.vm, name, _check_blob(m.vm[name], state, name))
            for saved, vcpu in zip(m.vcpus, machine.vcpus, strict=True):
                kvmstate.set_cpuid(vcpu, _check_blob(saved.cpuid, state, "cpuid"))
                for name in kvmstate.VCPU_PARTS:
                    if name in saved.parts:
                        data = _check_blob(saved.parts[name], state, name)
                        kvmstate.set_vcpu_part(vcpu, name, data)
                kvmstate.write_msrs(vcpu, {int(k, 16): v for k, v in saved.msrs.items()})
                kvmstate.set_regs(vcpu, saved.regs)
        except ValueError as e:
            raise SnapshotError(f"the snapshot's state is refused: {e}") from None
        if self.on_restored is not None:
            self.on_restored()

    def close(self) -> None:
        if self._memory_fd is not None:
            os.close(self._memory_fd)
            self._memory_fd = None
        if self._memory is not None:
            self._memory.close()
            self._memory = None


def checked(manifest: Manifest, state: bytes, memory_fd=None, memory=None) -> SavedVm:
    """A SavedVm from a manifest and its state.bin, once they agree with each other and
    with this pyvmm: the layout, the state's size and digest, every part's size."""
    check_layout(manifest.memory)
    if manifest.memory_file_size != sum(r.size for r in manifest.memory):
        raise SnapshotError(f"{MANIFEST}: memory_file_size is not the regions' total")
    if len(state) != manifest.state_size:
        raise SnapshotError(
            f"{STATE} is {len(state)} bytes, the manifest says {manifest.state_size}: truncated?"
        )
    if hashlib.sha256(state).hexdigest() != manifest.state_sha256:
        raise SnapshotError(f"{STATE} does not match the manifest's digest: changed?")
    _check_manifest(manifest, state)
    return SavedVm(manifest, state, memory_fd, memory)


def load(directory: str) -> SavedVm:
    """Open and check a snapshot; nothing is mapped until ``take_memory``."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotError(f"cannot open snapshot {directory}: {e.strerror}") from None
    memory_fd = None
    try:
        fd = _open_in(dir_fd, MANIFEST, "the record of what it holds")
        try:
            manifest = parse_manifest(_read_all(fd, MAX_MANIFEST, MANIFEST))
        finally:
            os.close(fd)
        fd = _open_in(dir_fd, STATE, "the vCPUs' and the VM's state")
        try:
            state = _read_all(fd, MAX_STATE, STATE)
        finally:
            os.close(fd)
        saved = checked(manifest, state)
        memory_fd = _open_in(dir_fd, MEMORY, "guest RAM")
        size, total = os.fstat(memory_fd).st_size, manifest.memory_file_size
        if size != total:
            raise SnapshotError(
                f"{MEMORY} is {size} bytes, the guest had {total}: truncated or not this snapshot's"
            )
        saved.adopt_memory_file(memory_fd)
        memory_fd = None
        return saved
    finally:
        if memory_fd is not None:
            os.close(memory_fd)
        os.close(dir_fd)
