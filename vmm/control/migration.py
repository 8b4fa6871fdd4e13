"""Live migration: a running guest moved to another pyvmm process, pre-copy (docs/state.md).

The source (``pyvmm ctl SOCKET migrate --to ADDRESS``, served on the API's thread) turns
on KVM's dirty log and sends every page that may hold data while the guest runs on; then
round after round the pages written since the round before, until few are left (or the
rounds stop shrinking); then it pauses the guest, sends the last dirty pages and the
state a snapshot holds (vmm/control/snapshot.py's ``capture``), and waits for the destination
(``pyvmm boot --incoming ADDRESS``) to say the state is in its KVM. The guest then runs
there, and the source ends with status 0. The time from the pause to that word is the
downtime. This is QEMU's pre-copy; a destination that fails before its word leaves the
source to run on. As QEMU's ``-incoming`` does, the destination builds its machine (the
VM, its memory slots, irqchip, vCPUs and disks) from the header, while the pages still
come: of the downtime it spends only the time to put the state into that machine.

The stream, in both directions frames of a type byte and two 64-bit numbers (little
endian), then the payload:

    H  0, n          the header: n bytes of JSON (format, version, the memory regions,
                     and the machine's shape: vCPUs, irqchip, Linux or not, disks)
    P  gpa, n        n bytes of guest memory from ``gpa`` (whole pages)
    S  m, n          the manifest (m bytes of JSON) and state.bin (n bytes)
    A  0, 0          destination to source: the guest is in; stop

Pages the VMM itself writes (virtio DMA into guest buffers, the used rings) are not in
KVM's log, which sees only the guest's writes: ``GuestMemory.vmm_writes`` records them
while a migration runs, and the last round sends them with the live queues' used rings.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import time
from dataclasses import dataclass

from vmm import record
from vmm.control import snapshot
from vmm.control.unixsock import SocketPathError, listen_unix
from vmm.errors import PyvmmError
from vmm.kvm import dirtylog
from vmm.memory import GuestMemory, GuestMemoryError

MIGRATION_FORMAT = "pyvmm-migration"
MIGRATION_VERSION = 2  # 2: the header gives the machine's shape
_FRAME = struct.Struct("<cQQ")
MAX_ROUNDS = 30  # pre-copy rounds before the stop whatever is left
STOP_PAGES = 256  # dirty pages few enough to send with the guest stopped (1 MiB)
MAX_RUN = 16 << 20  # bytes of memory in one P frame
MAX_HEADER = 1 << 20
ACK_TIMEOUT = 60.0  # seconds the destination may take to restore


class MigrationError(PyvmmError):
    pass


@dataclass
class DiskShape:
    path: str
    readonly: bool


@dataclass
class MachineShape:
    """What the destination's machine is built of before the state comes: the header's
    promise, held against the manifest when it arrives."""

    cpus: int
    irqchip: bool
    linux: bool
    disks: list[DiskShape]

    @classmethod
    def of(cls, manifest: snapshot.Manifest) -> MachineShape:
        disks = [DiskShape(d.path, d.readonly) for d in manifest.disks]
        return cls(len(manifest.vcpus), manifest.irqchip, manifest.linux, disks)


def parse_address(address: str) -> tuple[int, object]:
    """``unix:PATH`` or ``tcp:HOST:PORT`` as (socket family, socket address)."""
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return socket.AF_INET, (host, int(port))
    raise MigrationError(f"address {address!r}: expected unix:PATH or tcp:HOST:PORT")


class _Stream:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sent = 0

    def send(self, kind: bytes, a: int, payload) -> None:
        self.sock.sendall(_FRAME.pack(kind, a, len(payload)))
        self.sock.sendall(payload)
        self.sent += _FRAME.size + len(payload)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        self.recv_into(memoryview(buf))
        return bytes(buf)

    def recv_into(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if not n:
                raise MigrationError("the other side closed the migration stream")
            got += n

    def frame(self) -> tuple[bytes, int, int]:
        return _FRAME.unpack(self.recv_exact(_FRAME.size))


# --- the source ---------------------------------------------------------------------


def _page_runs(gfns) -> list[tuple[int, int]]:
    """Sorted page numbers as (first, count) runs."""
    runs: list[tuple[int, int]] = []
    for gfn in sorted(gfns):
        if runs and runs[-1][0] + runs[-1][1] == gfn:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((gfn, 1))
    return runs


def _send_pages(stream: _Stream, memory: GuestMemory, gfns) -> int:
    page = mmap.PAGESIZE
    count = 0
    for first, n in _page_runs(gfns):
        for start in range(first, first + n, MAX_RUN // page):
            pages = min(MAX_RUN // page, first + n - start)
            # read, not view: a view is what a device writes through, and is logged as
            # the VMM's write (vmm_writes), which would send every page again at the end
            stream.send(b"P", start * page, memory.read(start * page, pages * page))
            count += pages
    return count


def _dirty(vm) -> set[int]:
    """Guest page numbers KVM logged as written since the last look (and clears)."""
    page, dirty = mmap.PAGESIZE, set()
    for slot, (gpa, _, _, _) in enumerate(vm.slots):
        dirty.update(gpa // page + i for i in dirtylog.dirty_pages(vm, slot))
    return dirty


def _used_ring_pages(machine) -> set[int]:
    """The pages of every live queue's used ring: the device writes them, KVM never sees."""
    page, pages = mmap.PAGESIZE, set()
    for transport in machine.disks:
        for q in transport.save().queues:
            if q.ready:
                pages.update(range(q.device // page, (q.device + 6 + 8 * q.num) // page + 1))
    return pages


def send(machine, gate, address: str) -> dict:
    """Migrate ``machine`` to the pyvmm waiting at ``address``; returns the figures."""
    snapshot.check_savable(machine)
    family, target = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    started = time.perf_counter()
    try:
        sock.connect(target)
    except OSError as e:
        sock.close()
        raise MigrationError(f"cannot connect to {address}: {e.strerror}") from None
    stream = _Stream(sock)
    memory, vm = machine.memory, machine.vm
    page = mmap.PAGESIZE
    try:
        regions = [[r.gpa, r.size] for r in memory.regions]
        disks = [DiskShape(path, readonly) for path, readonly in machine.config.disks]
        shape = MachineShape(len(machine.vcpus), vm.has_irqchip, machine.linux, disks)
        header = {"format": MIGRATION_FORMAT, "version": MIGRATION_VERSION, "memory": regions,
                  "machine": record.to_json(shape)}  # fmt: skip
        stream.send(b"H", 0, json.dumps(header).encode())
        memory.vmm_writes = set()
        dirtylog.set_dirty_logging(vm, True)
        try:
            everything = [
                r.gpa // page + i
                for r, runs in memory.data_runs()
                for first, end in runs
                for i in range(first, end)
            ]
            rounds = [_send_pages(stream, memory, everything)]
            pending: set[int] = set()
            while len(rounds) < MAX_ROUNDS:
                pending = _dirty(vm)
                if len(pending) <= STOP_PAGES or (len(rounds) > 2 and len(pending) >= rounds[-1]):
                    break
                rounds.append(_send_pages(stream, memory, pending))
                pending = set()
            gate.pause()
            paused = time.perf_counter()
            try:
                for transport in machine.disks:
                    transport.drain()
                last = pending | _dirty(vm) | memory.vmm_writes | _used_ring_pages(machine)
                rounds.append(_send_pages(stream, memory, last))
                manifest, state = snapshot.capture(machine, gate.call)
                text = json.dumps(record.to_json(manifest)).encode()
                stream.send(b"S", len(text), text + state)
                sent = time.perf_counter()
                sock.settimeout(ACK_TIMEOUT)
                kind, _, _ = stream.frame()
                if kind != b"A":
                    raise MigrationError("the destination answered with something else")
            except BaseException:
                gate.resume()
                raise
            downtime = time.perf_counter() - paused
        finally:
            dirtylog.set_dirty_logging(vm, False)
            memory.vmm_writes = None
    except (OSError, MigrationError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise MigrationError(
            f"migration to {address} failed ({reason}); the guest runs on"
        ) from None
    finally:
        sock.close()
    gate.stop(0, f"guest migrated to {address}")
    return {
        "total_seconds": round(time.perf_counter() - started, 4),
        "rounds": len(rounds),
        "pages_per_round": rounds,
        "downtime_ms": round(downtime * 1000, 2),
        # The downtime in two: pausing and sending the rest here; the destination
        # building its machine and putting the state into its KVM.
        "stop_and_copy_ms": round((sent - paused) * 1000, 2),
        "destination_ms": round((paused + downtime - sent) * 1000, 2),
        "bytes_sent": stream.sent,
    }


# --- the destination ----------------------------------------------------------------


def _listen(address: str) -> socket.socket:
    family, target = parse_address(address)
    if family == socket.AF_UNIX:
        try:
            return listen_unix(target, "--incoming")
        except SocketPathError as e:
            raise MigrationError(str(e)) from None
    listener = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(target)
        listener.listen(1)
    except OSError as e:
        listener.close()
        raise MigrationError(f"--incoming {address}: {e.strerror}") from None
    return listener


def _read_header(stream: _Stream) -> tuple[list[snapshot.RegionRecord], MachineShape]:
    kind, _, n = stream.frame()
    if kind != b"H" or n > MAX_HEADER:
        raise MigrationError("the stream does not start with a migration header")
    try:
        header = json.loads(stream.recv_exact(n))
        if header.get("format") != MIGRATION_FORMAT:
            raise ValueError("not a pyvmm migration")
        if header.get("version") != MIGRATION_VERSION:
            raise ValueError(
                f"version {header.get('version')!r}; this pyvmm reads {MIGRATION_VERSION}"
            )
        regions, offset = [], 0
        for gpa, size in header["memory"]:
            regions.append(snapshot.RegionRecord(int(gpa), int(size), offset))
            offset += int(size)
        from vmm.vm.machine import check_cpus

        shape = record.from_json(header["machine"], MachineShape, "machine")
        check_cpus(shape.cpus)
    except (ValueError, TypeError, KeyError, AttributeError, PyvmmError) as e:
        raise MigrationError(f"bad migration header: {e}") from None
    try:
        snapshot.check_layout(regions)
    except snapshot.SnapshotError as e:
        raise MigrationError(f"bad migration header: {e}") from None
    return regions, shape


class IncomingVm:
    """A guest on its way in, known so far by its header: ``Machine`` builds what the
    header's shape says, then calls ``restore_into``, which takes the rest of the stream
    (the pages straight into the machine's memory, then the state) and restores it. The
    source hears that it may stop once the machine holds the state."""

    def __init__(self, stream: _Stream, regions: list[snapshot.RegionRecord],
                 shape: MachineShape, memory: GuestMemory):  # fmt: skip
        self._stream, self._regions, self._shape = stream, regions, shape
        self._memory: GuestMemory | None = memory  # until the machine takes it
        self.linux = shape.linux
        self.irqchip = shape.irqchip

    def take_memory(self) -> GuestMemory:
        memory, self._memory = self._memory, None
        return memory

    def machine_config(self, output):
        from vmm.vm.machine import MachineConfig

        disks = tuple((d.path, d.readonly) for d in self._shape.disks)
        size = sum(r.size for r in self._regions)
        return MachineConfig("", size, output=output, disks=disks, cpus=self._shape.cpus,
                             restore=self)  # fmt: skip

    def restore_into(self, machine) -> None:
        saved = self._receive(machine.memory)
        saved.on_restored = lambda: _acknowledge(self._stream)
        saved.restore_into(machine)

    def _receive(self, memory: GuestMemory) -> snapshot.SavedVm:
        """The pre-copy's pages, into guest memory, up to the state frame; the state."""
        stream = self._stream
        try:
            while True:
                kind, a, n = stream.frame()
                if kind == b"P":
                    if a % mmap.PAGESIZE or n % mmap.PAGESIZE or n > MAX_RUN:
                        raise MigrationError(f"a page frame at {a:#x}+{n:#x} is not whole pages")
                    try:
                        view = memory.view(a, n)
                    except GuestMemoryError as e:
                        raise MigrationError(f"a page frame outside guest memory: {e}") from None
                    with view:
                        stream.recv_into(view)
                elif kind == b"S":
                    break
                else:
                    raise MigrationError(f"unexpected frame {kind!r} in the migration stream")
            if a > snapshot.MAX_MANIFEST or n - a > snapshot.MAX_STATE or a > n:
                raise MigrationError("the state frame is too large")
            data = stream.recv_exact(n)
        except OSError as e:
            raise MigrationError(f"the migration stream failed: {e.strerror}") from None
        manifest = snapshot.parse_manifest(data[:a])
        if [(r.gpa, r.size) for r in manifest.memory] != [(r.gpa, r.size) for r in self._regions]:
            raise MigrationError("the state's memory is not the header's")
        if MachineShape.of(manifest) != self._shape:
            raise MigrationError("the state's machine is not the header's")
        return snapshot.checked(manifest, data[a:])

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        self._stream.sock.close()


def receive(address: str) -> IncomingVm:
    """Wait at ``address`` for one guest; returns it once its header is read, for
    ``Machine`` to build and restore."""
    listener = _listen(address)
    try:
        conn, _ = listener.accept()
    finally:
        listener.close()
        family, target = parse_address(address)
        if family == socket.AF_UNIX:
            os.unlink(target)
    stream = _Stream(conn)
    try:
        regions, shape = _read_header(stream)
        return IncomingVm(stream, regions, shape, GuestMemory([(r.gpa, r.size) for r in regions]))
    except OSError as e:
        conn.close()
        raise MigrationError(f"the migration stream failed: {e.strerror}") from None
    except BaseException:
        conn.close()
        raise


def _acknowledge(stream: _Stream) -> None:
    try:
        stream.sock.sendall(_FRAME.pack(b"A", 0, 0))
    finally:
        stream.sock.close()
