"""``pyvmm boot --gdb``: a gdb remote stub that stops, steps and inspects the vCPU.

The stub hangs on the machine's exit loop like ``--trace`` does (``Machine.before_run``
and ``after_run``): after an exit it decides whether the vCPU has stopped (a debug exit
for a breakpoint or a step, or gdb's Ctrl-C); before the next KVM_RUN it serves gdb
for as long as the vCPU is stopped, and arms single-stepping and breakpoints with
``KVM_SET_GUEST_DEBUG`` for the run that follows. The first stop is before the first
guest instruction: pyvmm waits there for gdb to connect.

A reader thread turns what gdb sends into events; a Ctrl-C from gdb, while the guest
runs, sets ``immediate_exit`` and kicks the vCPU threads out of KVM_RUN with a signal.

Each vCPU is one of gdb's threads (vCPU i is thread i + 1), in gdb's all-stop mode, as
QEMU's gdbstub serves them: when one vCPU stops, the stub stops the others (a kick each),
and they wait in ``before_run`` while the thread of the one that stopped serves gdb.
``Hg`` picks the vCPU whose registers and page tables ``g``, ``p`` and ``m`` use; a
``vCont`` resumes the vCPUs it names (all with ``c``), stepping the ones it says to.

What the host's KVM can deliver decides how gdb's requests are served (``probe``):
``break`` (Z0) is an int3 where KVM reports int3s, and a hardware breakpoint otherwise;
a write watchpoint (Z2) is a debug register where data breakpoints fire, and otherwise
the stub single-steps and compares the watched bytes after each instruction.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import sys
import threading
from typing import NamedTuple

from vmm.debug.gdb import debugregs
from vmm.debug.gdb.packets import Event, PacketReader, frame
from vmm.debug.gdb.probe import DebugSupport
from vmm.debug.gdb.registers import Layout, RegisterFile, layout_for
from vmm.errors import PyvmmError
from vmm.guest_stop import GuestStop
from vmm.kvm import DebugExit, InterruptedExit, KvmError, kick

PACKET_SIZE = 0x4000  # the largest payload we accept, announced in qSupported
HELD_POLL = 0.1  # seconds: how often a held vCPU looks whether the run has ended

# Signal numbers in stop replies are gdb's own (include/gdb/signals.def).
GDB_SIGINT = 2
GDB_SIGTRAP = 5
KILLED_STATUS = 137  # 128 + SIGKILL, as a shell reports a killed process
BP_VECTOR = 3  # #BP, int3 (Intel SDM vol. 3, 6.3.1)
INT3 = b"\xcc"
PAGE_SIZE = 0x1000
# Errno-style error replies, as gdbserver sends them.
E_INVALID = "E16"  # EINVAL
E_FAULT = "E0e"  # EFAULT
E_NOSPC = "E1c"  # ENOSPC: no debug register left


class GdbAddressError(PyvmmError):
    """--gdb names an address we cannot or may not listen on."""


def listen(address: str, allow_remote: bool) -> socket.socket:
    """A socket listening on ``[HOST:]PORT``; refuses non-loopback hosts unless allowed.

    Anyone who can reach the port can read and change the guest's memory: a debug stub
    has no authentication, hence loopback unless the user says otherwise.
    """
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
        if not 0 <= port <= 0xFFFF:
            raise ValueError
    except ValueError:
        raise GdbAddressError(f"--gdb {address}: the port must be a number 0-65535") from None
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[
            0
        ]
    except (socket.gaierror, UnicodeError) as e:
        raise GdbAddressError(
            f"--gdb {address}: {e.strerror if hasattr(e, 'strerror') else e}"
        ) from None
    if not ipaddress.ip_address(sockaddr[0].split("%")[0]).is_loopback:
        if not allow_remote:
            raise GdbAddressError(
                f"--gdb {address}: {sockaddr[0]} is not a loopback address; anyone who can "
                "reach it controls the guest (add --gdb-allow-remote to allow it)"
            )
        print(
            f"pyvmm: warning: gdb stub listening on {sockaddr[0]}: anyone who can reach it "
            "can read and change the guest",
            file=sys.stderr,
        )
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(1)
    except OSError as e:
        sock.close()
        raise GdbAddressError(f"--gdb {address}: cannot listen: {e.strerror}") from None
    return sock


class _Slot(NamedTuple):
    """A debug register in use: what gdb asked for (its Z type, address and length), and
    the aligned piece of it this register watches (a watchpoint may take several)."""

    ztype: int
    addr: int
    length: int
    piece: tuple[int, int, int]  # (address, condition, size), as debugregs.debugreg takes


class _Connection:
    """One gdb connection: a reader thread feeding events to a queue; writes with acks."""

    def __init__(self, sock: socket.socket, on_interrupt):
        self.sock = sock
        self.ack = True
        self.events: queue.Queue[Event | None] = queue.Queue()
        self._on_interrupt = on_interrupt
        self._last = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="gdb-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        reader = PacketReader(PACKET_SIZE)
        try:
            while data := self.sock.recv(65536):
                for event in reader.feed(data):
                    if event.kind == "interrupt":
                        self._on_interrupt()
                    elif event.kind == "nak":
                        self._write(self._last)
                    elif event.kind != "ack":
                        self.events.put(event)
        except OSError:
            pass
        self.events.put(None)

    def _write(self, data: bytes) -> None:
        with self._lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # gdb went away; the reader reports it

    def send(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        self._last = frame(payload)
        self._write(self._last)

    def acknowledge(self, good: bool = True) -> None:
        if self.ack:
            self._write(b"+" if good else b"-")

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(timeout=5)
        self.sock.close()


class _Resume(Exception):
    """A command that lets the vCPU run again (c, s, vCont, D)."""


class GdbStub:
    """The debugger side of one machine; its vCPUs are gdb's threads 1, 2, ..."""

    def __init__(self, listener: socket.socket, vcpus, memory, support: DebugSupport, threads):
        self.listener = listener
        self.vcpus = vcpus
        self.threads = threads  # which thread runs which vCPU, to kick them (vmm/vm/vcpus.py)
        self.memory = memory
        self.support = support
        self.conn: _Connection | None = None
        self.layout: Layout | None = None
        self.stop_reply: str | None = f"T{GDB_SIGTRAP:02x}thread:01;"
        self.reply_pending = False  # gdb waits for a stop reply (after c, s, vCont)
        self.stepping: set[int] = set()  # vCPUs single-stepping for gdb
        self.running: set[int] = set()  # vCPUs the last resume let go
        self.current = 0  # the vCPU gdb's register and memory packets address (Hg)
        self.detached = False
        self.slots: list[_Slot | None] = [None] * debugregs.NR_BREAKPOINTS
        self.int3s: dict[int, bytes] = {}  # address: the byte an int3 replaced
        self.soft_watches: dict[tuple[int, int], bytes] = {}  # (addr, length): bytes
        self._interrupt = False
        self._debug: list = [None] * len(vcpus)
        self._cond = threading.Condition()
        self._serving = False  # a vCPU thread is serving gdb; the others wait
        self._ending = False
        kick.prepare()

    @property
    def vcpu(self):
        return self.vcpus[self.current]

    # --- the machine's hooks ---------------------------------------------------------

    def before_run(self, vcpu) -> None:
        """Serve gdb while the machine is stopped, on the first vCPU thread to get here;
        hold the others until a resume lets them go (or the run ends: another vCPU
        powered off while these were held)."""
        while self._wait_or_serve(vcpu):
            try:
                self._serve()
            except GuestStop:
                self._end()
                raise
            finally:
                with self._cond:
                    self._serving = False
                    self._cond.notify_all()

    def _wait_or_serve(self, vcpu) -> bool:
        """Wait while ``vcpu`` may not run; True when this thread is to serve gdb."""
        with self._cond:
            while not (self._ending or self.threads.stopping):
                if self.stop_reply is not None:
                    if not self._serving:
                        self._serving = True
                        return True
                elif not self._held(vcpu):
                    vcpu.request_exit(False)  # the kick that stopped it is spent
                    return False
                self._cond.wait(HELD_POLL)
            return False

    def _held(self, vcpu) -> bool:
        return not self.detached and vcpu.index not in self.running

    def after_run(self, vcpu, exit) -> None:
        kind = type(exit)
        if kind is DebugExit:
            self._debug_exit(vcpu, exit)
        elif kind is InterruptedExit and self._interrupt:
            self._stop(vcpu, f"T{GDB_SIGINT:02x}")

    def _end(self) -> None:
        """The run is ending: let every waiting vCPU thread go, to be stopped."""
        with self._cond:
            self._ending = True
            self._cond.notify_all()

    def finish(self, status: int) -> None:
        """The guest has ended: tell gdb (``W``, exited with a status) and stop serving."""
        self._end()
        if self.conn is not None:
            if self.reply_pending:
                self.conn.send(f"W{status & 0xFF:02x}")
            self.conn.close()
            self.conn = None
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.listener.close()

    # --- stopping ----------------------------------------------------------------------

    def _debug_exit(self, vcpu, exit: DebugExit) -> None:
        if exit.exception == BP_VECTOR:
            self._stop(vcpu, f"T{GDB_SIGTRAP:02x}")
            return
        for n in range(debugregs.NR_BREAKPOINTS):
            slot = self.slots[n]
            if exit.dr6 & (1 << n) and slot is not None:
                watch = {2: "watch", 3: "rwatch", 4: "awatch"}.get(slot.ztype)
                reason = f"{watch}:{slot.addr:x};" if watch else ""
                self._stop(vcpu, f"T{GDB_SIGTRAP:02x}{reason}")
                return
        for (addr, length), old in self.soft_watches.items():
            now = self._read_memory(addr, length)
            if now != old:
                self._stop(vcpu, f"T{GDB_SIGTRAP:02x}watch:{addr:x};")
                return
        if vcpu.index in self.stepping:
            self._stop(vcpu, f"T{GDB_SIGTRAP:02x}")
        # else: a step the stub took to check its watchpoints; the guest runs on

    def _stop(self, vcpu, reason: str) -> None:
        """``vcpu`` stopped for gdb: stop the others too (all-stop); the first stop of a
        resume is the one gdb hears of, and its vCPU becomes the current thread."""
        with self._cond:
            if self.stop_reply is not None:
                return
            self.stop_reply = f"{reason}thread:{vcpu.index + 1:02x};"
            self.current = vcpu.index
            self._interrupt = False
            self.running = set()
        for other in self.vcpus:
            if other is not vcpu:
                other.request_exit(True)
                self.threads.kick(other.index)

    def _on_interrupt(self) -> None:
        """gdb's Ctrl-C, on the reader thread: stop the running vCPUs."""
        if self.stop_reply is None and not self.detached:
            self._interrupt = True
            for vcpu in self.vcpus:
                if vcpu.index in self.running:
                    vcpu.request_exit(True)
                    self.threads.kick(vcpu.index)

    # --- serving gdb while stopped ---------------------------------------------------

    def _serve(self) -> None:
        while True:
            if self.conn is None:
                self._accept()
            if self.reply_pending:
                self.reply_pending = False
                self.conn.send(self.stop_reply)
            event = self.conn.events.get()
            if event is None:  # gdb went away without detaching: wait for the next one
                self.conn.close()
                self.conn = None
                continue
            if event.kind == "bad":
                self.conn.acknowledge(event.payload != b"bad checksum")
                if not self.conn.ack or event.payload != b"bad checksum":
                    self.conn.send(E_INVALID)
                continue
            self.conn.acknowledge()
            try:
                reply = self._handle(event.payload)
            except _Resume:
                return
            except GuestStop:
                self.conn.close()
                self.conn = None
                raise
            if reply is not None:
                self.conn.send(reply)

    def _accept(self) -> None:
        sock, _ = self.listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.layout = None
        self.conn = _Connection(sock, self._on_interrupt)

    def _handle(self, packet: bytes) -> str | bytes | None:
        """The reply to one packet; an empty reply means "not supported", as gdb expects."""
        if not packet:
            return ""
        try:
            text = packet.decode("latin-1")
            head = text[0]
            if text.startswith(("qSupported", "QStartNoAckMode", "qXfer:", "qAttached")):
                return self._query(text)
            threads = ("qC", "qfThreadInfo", "qsThreadInfo", "qThreadExtraInfo,")
            if text.startswith(threads) or head in "?HT":
                return self._threads(text)
            if head in "gGpP":
                return self._registers(text)
            if head in "mM":
                return self._memory(text)
            if head == "X":
                return self._write_binary(packet)
            if head in "Zz":
                return self._breakpoint(text)
            if head in "csCS" or text.startswith("vCont"):
                return self._resume_command(text)
            if head == "D":
                return self._detach()
            if head == "k" or text.startswith("vKill"):
                raise GuestStop(KILLED_STATUS, "guest killed from gdb")
            return ""
        except (ValueError, IndexError, OverflowError, KvmError):
            return E_INVALID  # malformed, or a value KVM refused (say, a CR0 it cannot take)

    def _query(self, text: str) -> str:
        if text.startswith("qSupported"):
            return (
                f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;QStartNoAckMode+;vContSupported+"
            )
        if text == "QStartNoAckMode":
            self.conn.send("OK")  # acknowledged, as the last packet in ack mode
            self.conn.ack = False
            return None
        if text == "qAttached":
            return "1"  # attached to a running target: gdb detaches rather than kills
        annex, offset, length = _xfer_args(text)
        if annex is None:
            return ""
        if annex != "target.xml":
            return E_INVALID
        data = self._layout().target_xml()
        chunk = data[offset : offset + length]
        return ("m" if offset + length < len(data) else "l") + chunk

    def _threads(self, text: str) -> str:
        if text == "?":
            return self.stop_reply
        if text == "qC":
            return f"QC{self.current + 1:x}"
        if text == "qfThreadInfo":
            return "m" + ",".join(f"{v.index + 1:x}" for v in self.vcpus)
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qThreadExtraInfo,"):
            vcpu = self._thread_vcpu(text.split(",", 1)[1])
            return E_INVALID if vcpu is None else f"vCPU {vcpu.index}".encode().hex()
        if text[:2] == "Hc":  # the thread of old-style c and s: vCont serves gdb instead
            return "OK" if self._thread_vcpu(text[2:], any_ok=True) is not None else E_INVALID
        if text[0] == "H":
            vcpu = self._thread_vcpu(text[2:], any_ok=True)
            if vcpu is None:
                return E_INVALID
            self.current = vcpu.index  # the register layout stays: gdb cannot change it
            return "OK"
        return "OK" if self._thread_vcpu(text[1:]) is not None else E_INVALID

    def _thread_vcpu(self, thread: str, any_ok: bool = False):
        """The vCPU of a gdb thread id; 0 ("any") and -1 ("all") mean the current one."""
        n = int(thread, 16)
        if any_ok and n in (0, -1):
            return self.vcpu
        return self.vcpus[n - 1] if 1 <= n <= len(self.vcpus) else None

    def _layout(self) -> Layout:
        if self.layout is None:
            self.layout = layout_for(self.vcpu.get_sregs())
        return self.layout

    def _registers(self, text: str) -> str:
        regs = RegisterFile(self.vcpu, self._layout())
        if text == "g":
            return regs.read_all()
        if text[0] == "G":
            # Decode every value before writing any: a bad packet changes nothing. gdb
            # sends every register of the layout, "xx..." for one it does not know (one
            # read as unavailable), so data shorter or longer than the layout is refused.
            if len(text) - 1 != sum(r.bits // 4 for r in regs.layout.registers):
                return E_INVALID
            values, pos = [], 1
            for n, r in enumerate(regs.layout.registers):
                digits = text[pos : pos + r.bits // 4]
                pos += r.bits // 4
                if "x" not in digits:
                    values.append((n, bytes.fromhex(digits)))
            for n, data in values:
                regs.write(n, data)
            return "OK"
        if text[0] == "p":
            n = _number(text[1:])
            return regs.read(n) if n < len(regs.layout.registers) else E_INVALID
        n, value = text[1:].split("=")
        if _number(n) >= len(regs.layout.registers):
            return E_INVALID
        regs.write(_number(n), bytes.fromhex(value))
        return "OK"

    # --- memory, at guest-linear addresses ---------------------------------------------

    def _memory(self, text: str) -> str:
        where, _, data = text[1:].partition(":")
        addr, length = (_number(x) for x in where.split(","))
        if text[0] == "m":
            length = min(length, PACKET_SIZE // 2)
            got = self._read_memory(addr, length)
            return got.hex() if got or not length else E_FAULT
        payload = bytes.fromhex(data)
        if len(payload) != length:
            return E_INVALID
        return "OK" if self._write_memory(addr, payload) else E_FAULT

    def _write_binary(self, packet: bytes) -> str:
        header, sep, data = packet[1:].partition(b":")
        addr, length = (_number(x.decode()) for x in header.split(b","))
        if not sep or len(data) != length:
            return E_INVALID
        return "OK" if self._write_memory(addr, data) else E_FAULT

    def _pages(self, addr: int, length: int):
        """(guest-physical address, size) per page of a linear range; None where unmapped."""
        while length > 0:
            size = min(length, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
            gpa = self.vcpu.translate(addr)
            yield (gpa if gpa is not None and self.memory.contains(gpa, size) else None), size
            addr += size
            length -= size

    def _read_memory(self, addr: int, length: int) -> bytes:
        """As many bytes as are readable from ``addr``, with the stub's int3s hidden."""
        out = bytearray()
        for gpa, size in self._pages(addr, length):
            if gpa is None:
                break
            out += self.memory.read(gpa, size)
        for at, original in self.int3s.items():
            if addr <= at < addr + len(out):
                out[at - addr] = original[0]
        return bytes(out)

    def _write_memory(self, addr: int, data: bytes) -> bool:
        pages = list(self._pages(addr, len(data)))
        if any(gpa is None for gpa, _ in pages):
            return False
        pos = 0
        for gpa, size in pages:
            self.memory.write(gpa, data[pos : pos + size])
            pos += size
        for at in self.int3s:  # gdb wrote over one of our int3s: keep the breakpoint
            if addr <= at < addr + len(data):
                self.int3s[at] = data[at - addr : at - addr + 1]
                self._write_memory_raw(at, INT3)
        return True

    def _write_memory_raw(self, addr: int, data: bytes) -> bool:
        saved, self.int3s = self.int3s, {}
        try:
            return self._write_memory(addr, data)
        finally:
            self.int3s = saved

    # --- breakpoints and watchpoints -----------------------------------------------------

    def _breakpoint(self, text: str) -> str:
        insert = text[0] == "Z"
        ztype, addr, kind = text[1:].split(";")[0].split(",")
        ztype, addr, length = int(ztype), _number(addr), _number(kind)
        if ztype == 0 and self.support.sw_breakpoints:
            return self._int3(addr, insert)
        if ztype in (0, 1):
            pieces, condition = [(addr, 1)], debugregs.EXECUTE
        elif ztype in (2, 3, 4):
            if length <= 0 or length > 64:
                return E_INVALID
            if not self.support.watchpoints:
                if ztype != 2:
                    return ""  # x86 has no way to watch reads but a debug register
                return self._soft_watch(addr, length, insert)
            pieces = debugregs.split(addr, length)
            condition = debugregs.WRITE if ztype == 2 else debugregs.ACCESS
        else:
            return ""
        slots = [_Slot(ztype, addr, length, (a, condition, size)) for a, size in pieces]
        return self._debug_registers(slots, insert)

    def _debug_registers(self, pieces: list[_Slot], insert: bool) -> str:
        mine = [n for n, s in enumerate(self.slots) if s and s[:3] == pieces[0][:3]]
        if not insert:
            for n in mine:
                self.slots[n] = None
            return "OK"
        if mine:
            return "OK"
        free = [n for n, s in enumerate(self.slots) if s is None]
        if len(free) < len(pieces):
            return E_NOSPC
        for n, slot in zip(free, pieces, strict=False):  # more free than needed
            self.slots[n] = slot
        return "OK"

    def _int3(self, addr: int, insert: bool) -> str:
        if insert:
            if addr not in self.int3s:
                original = self._read_memory(addr, 1)
                if not original or not self._write_memory_raw(addr, INT3):
                    return E_FAULT
                self.int3s[addr] = original
        elif addr in self.int3s:
            self._write_memory_raw(addr, self.int3s.pop(addr))
        return "OK"

    def _soft_watch(self, addr: int, length: int, insert: bool) -> str:
        if insert:
            current = self._read_memory(addr, length)
            if len(current) != length:
                return E_FAULT
            self.soft_watches[(addr, length)] = current
        else:
            self.soft_watches.pop((addr, length), None)
        return "OK"

    # --- resuming ------------------------------------------------------------------------

    def _resume_command(self, text: str) -> str:
        if text == "vCont?":
            return "vCont;c;C;s;S"
        if text.startswith("vCont;"):
            # Each vCPU takes the first action that names it, or names no thread.
            actions: dict[int, str] = {}
            for action in text[6:].split(";"):
                what, _, thread = action.partition(":")
                if not what or what[0] not in "csCS":
                    return E_INVALID
                if thread and int(thread, 16) not in (-1, 0):
                    vcpu = self._thread_vcpu(thread)
                    if vcpu is None:
                        return E_INVALID
                    actions.setdefault(vcpu.index, what[0])
                else:
                    for vcpu in self.vcpus:
                        actions.setdefault(vcpu.index, what[0])
            self._resume(set(actions), {i for i, what in actions.items() if what in "sS"})
        if text[0] in "cs" and len(text) > 1:  # c ADDR, s ADDR: resume there
            regs = self.vcpu.get_regs()
            regs.rip = _number(text[1:])
            self.vcpu.set_regs(regs)
        if text[0] in "cC":
            self._resume({v.index for v in self.vcpus}, set())
        self._resume({self.current}, {self.current})  # s: the current vCPU alone

    def _resume(self, running: set[int], stepping: set[int]) -> None:
        self.stepping = stepping
        for key in self.soft_watches:
            self.soft_watches[key] = self._read_memory(*key)
        for vcpu in self.vcpus:
            step = vcpu.index in stepping or bool(self.soft_watches and vcpu.index in running)
            self._arm(vcpu, single_step=step)
        with self._cond:
            self.running = running
            self.stop_reply = None
            self._cond.notify_all()
        self.reply_pending = True
        raise _Resume

    def _arm(self, vcpu, single_step: bool) -> None:
        used = [None if s is None else s.piece for s in self.slots]
        debug = (single_step, bool(self.int3s), tuple(used))
        if debug != self._debug[vcpu.index]:
            regs = debugregs.debugreg(used) if any(used) else None
            vcpu.set_guest_debug(single_step, bool(self.int3s), regs)
            self._debug[vcpu.index] = debug

    def _detach(self) -> str:
        """Remove every breakpoint and let the guest run to its end on its own."""
        for addr in list(self.int3s):
            self._int3(addr, insert=False)
        self.slots = [None] * debugregs.NR_BREAKPOINTS
        self.soft_watches.clear()
        self.conn.send("OK")
        self.conn.close()
        self.conn = None
        self.detached = True
        self._resume({v.index for v in self.vcpus}, set())


def _number(text: str) -> int:
    """A hex number from a packet: an address, a length or an index, so 0 to 2**64 - 1."""
    value = int(text, 16)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{text} is out of range")
    return value


def _xfer_args(text: str) -> tuple[str | None, int, int]:
    """qXfer:features:read:ANNEX:OFFSET,LENGTH; (None, 0, 0) for any other object."""
    parts = text.split(":")
    if len(parts) != 5 or parts[1:3] != ["features", "read"]:
        return None, 0, 0
    offset, length = (_number(x) for x in parts[4].split(","))
    return parts[3], offset, length


def attach(machine, listener: socket.socket, kvm) -> GdbStub:
    """Hang a stub on ``machine``'s exit loop; it holds the vCPU before its first
    instruction until gdb connects. First among the hooks: --trace and --stats then see
    the run that the stub let go."""
    from vmm.debug.gdb.probe import probe

    stub = GdbStub(listener, machine.vcpus, machine.memory, probe(kvm), machine.threads)
    machine.before_run.insert(0, stub.before_run)
    machine.after_run.insert(0, stub.after_run)
    host, port = listener.getsockname()[:2]
    print(
        f"pyvmm: waiting for gdb on {host}:{port} (in gdb: target remote {host}:{port})",
        file=sys.stderr,
        flush=True,
    )
    return stub
