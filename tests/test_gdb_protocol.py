"""The gdb stub's protocol, packet by packet: framing on its own, then a scripted client
speaking to the stub of a real ``pyvmm boot --gdb`` (every packet, and malformed ones)."""

import re
import socket
import subprocess
import xml.etree.ElementTree as ET

import pytest
from gdbtest import GDB_TIMEOUT, pyvmm_gdb, spinning_program
from vmtest import GUEST, needs_kvm

from vmm.debug.gdb import debugregs
from vmm.debug.gdb.packets import Event, PacketReader, checksum, frame, unescape
from vmm.debug.gdb.registers import I8086, X86_64
from vmm.debug.gdb.stub import PACKET_SIZE

KERNEL = GUEST / "build" / "kernel.elf"
LAB_BIN = "guest/build/realmode.bin"
ENTRY = 0x100000  # the tiny kernel's _start, where the stub holds the vCPU first

# --- framing, on its own ------------------------------------------------------------------


def test_frame_escapes_special_bytes_and_checksums_what_it_sends():
    payload = b"a$b#c}d*e"
    packet = frame(payload)
    body, cs = packet[1:-3], packet[-2:]
    assert packet[:1] == b"$" and packet[-3:-2] == b"#"
    assert b"$" not in body and b"#" not in body
    assert int(cs, 16) == checksum(body)
    assert unescape(body) == payload


def test_reader_reassembles_packets_fed_one_byte_at_a_time():
    reader = PacketReader(64)
    stream = b"+" + frame(b"qSupported:x+") + b"\x03-" + frame(b"X0,1:}]")
    events = [e for b in stream for e in reader.feed(bytes((b,)))]
    assert events == [
        Event("ack"), Event("packet", b"qSupported:x+"), Event("interrupt"), Event("nak"),
        Event("packet", b"X0,1:}]"),
    ]  # fmt: skip


def test_reader_reports_bad_checksums_cut_packets_and_oversized_ones():
    reader = PacketReader(8)
    assert reader.feed(b"$g#00") == [Event("bad", b"bad checksum")]
    assert reader.feed(b"$g#zz") == [Event("bad", b"bad checksum")]
    assert reader.feed(b"$abc$g#67") == [Event("bad", b"packet cut short"), Event("packet", b"g")]
    assert reader.feed(frame(b"x" * 100)) == [Event("bad", b"packet too long")]
    assert reader.feed(b"noise" + frame(b"?")) == [Event("packet", b"?")]


def test_debug_registers_encode_dr7_conditions_and_lengths():
    regs = debugregs.debugreg([(0x1000, debugregs.EXECUTE, 1), None, (0x2000, debugregs.WRITE, 8)])
    assert regs[0] == 0x1000 and regs[2] == 0x2000
    dr7 = regs[7]
    assert dr7 & 0b110011 == 0b010001  # L0 and L2 enabled, L1 not
    assert dr7 >> 16 & 0xF == 0  # DR0: execute, 1 byte
    assert dr7 >> 24 & 0xF == 0b1001  # DR2: write, 8 bytes
    assert debugregs.split(0x1003, 7) == [(0x1003, 1), (0x1004, 4), (0x1008, 2)]


def test_target_descriptions_list_gdbs_register_names_in_order():
    for layout, pc, first in ((X86_64, "rip", "rax"), (I8086, "eip", "eax")):
        root = ET.fromstring(layout.target_xml().split("?>", 1)[1])
        names = [r.get("name") for r in root.iter("reg")]
        assert names == [r.name for r in layout.registers]
        assert names[0] == first and pc in names
        assert [int(r.get("regnum")) for r in root.iter("reg")] == list(range(len(names)))
    assert "<architecture>i8086</architecture>" in I8086.target_xml()


# --- a scripted client against the real stub ----------------------------------------------


class Client:
    """gdb's side of the protocol, written out by hand."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=GDB_TIMEOUT)
        self.buf = b""
        self.ack = True

    def _byte(self) -> bytes:
        while not self.buf:
            data = self.sock.recv(65536)
            assert data, "the stub closed the connection"
            self.buf += data
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect_ack(self, what: bytes = b"+") -> None:
        if self.ack:
            assert self._byte() == what

    def reply(self) -> bytes:
        while self._byte() != b"$":
            pass
        body = b""
        while (b := self._byte()) != b"#":
            body += b
        assert int(self._byte() + self._byte(), 16) == checksum(body)
        if self.ack:
            self.raw(b"+")
        return unescape(body)

    def ask(self, payload: bytes | str) -> str:
        if isinstance(payload, str):
            payload = payload.encode()
        self.raw(frame(payload))
        self.expect_ack()
        return self.reply().decode("latin-1")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def stub(guest_build):
    if needs_kvm.args[0] is not False:
        pass
    with pyvmm_gdb() as vm:
        client = Client(vm.port)
        client.vm = vm
        yield client
        client.close()


def regs_of(client, layout=X86_64) -> dict[str, int | None]:
    """The ``g`` reply by register name; None for one the stub says is unavailable."""
    text = client.ask("g")
    values, pos = {}, 0
    for r in layout.registers:
        digits = text[pos : pos + r.bits // 4]
        values[r.name] = None if "x" in digits else int.from_bytes(bytes.fromhex(digits), "little")
        pos += r.bits // 4
    assert pos == len(text)
    return values


def kernel_bytes(address: int, size: int) -> bytes:
    out = subprocess.run(["objdump", "-s", f"--start-address={address}",
                          f"--stop-address={address + size}", "-j", ".text", str(KERNEL)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = re.findall(r"^ [0-9a-f]+ ((?:[0-9a-f]{2,8} ?){1,4})", out, re.M)
    return bytes.fromhex("".join(r.replace(" ", "") for r in rows))[:size]


def sym(name: str) -> int:
    out = subprocess.run(["nm", str(KERNEL)], capture_output=True, text=True).stdout
    return int(re.search(rf"^([0-9a-f]+) \w {name}$", out, re.M).group(1), 16)


@needs_kvm
def test_queries_before_the_first_instruction(stub):
    supported = stub.ask("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
    assert f"PacketSize={PACKET_SIZE:x}" in supported.split(";")
    assert "qXfer:features:read+" in supported and "QStartNoAckMode+" in supported
    assert stub.ask("?") == "T05thread:01;"
    assert stub.ask("qAttached") == "1"
    assert stub.ask("qC") == "QC1"
    assert stub.ask("qfThreadInfo") == "m1"
    assert stub.ask("qsThreadInfo") == "l"
    assert stub.ask("Hg0") == stub.ask("Hc-1") == stub.ask("T1") == "OK"
    assert stub.ask("Hg2").startswith("E") and stub.ask("T2").startswith("E")
    assert stub.ask("vMustReplyEmpty") == ""  # unknown packets: the empty reply


@needs_kvm
def test_target_description_read_in_pieces(stub):
    xml, offset = "", 0
    while True:
        part = stub.ask(f"qXfer:features:read:target.xml:{offset:x},100")
        xml += part[1:]
        offset += len(part) - 1
        if part[0] == "l":
            break
        assert part[0] == "m"
    assert xml == X86_64.target_xml()  # the kernel starts in long mode
    assert stub.ask("qXfer:features:read:other.xml:0,100").startswith("E")
    assert stub.ask(f"qXfer:features:read:target.xml:{len(xml) + 10:x},10") == "l"


@needs_kvm
def test_registers_read_and_written(stub):
    regs = regs_of(stub)
    assert regs["rip"] == ENTRY
    assert regs["cs"] == 0x08 and regs["cr0"] & 1 and regs["efer"] & (1 << 10)
    rip = [r.name for r in X86_64.registers].index("rip")
    assert stub.ask(f"p{rip:x}") == ENTRY.to_bytes(8, "little").hex()
    assert stub.ask("P0=" + (0x1122334455667788).to_bytes(8, "little").hex()) == "OK"
    assert stub.ask("p0") == "8877665544332211"
    whole = stub.ask("g")
    changed = whole[:16] + (42).to_bytes(8, "little").hex() + whole[32:]  # rbx
    assert stub.ask("G" + changed) == "OK"
    assert regs_of(stub)["rbx"] == 42
    assert regs["mxcsr"] is None  # KVM_GET_FPU does not carry it
    mxcsr = [r.name for r in X86_64.registers].index("mxcsr")
    assert stub.ask(f"p{mxcsr:x}") == "xxxxxxxx"
    assert stub.ask(f"P{mxcsr:x}=801f0000").startswith("E")
    assert stub.ask("G" + changed[:-1]).startswith("E")  # half a byte
    assert stub.ask("G" + changed + "00").startswith("E")  # more than the registers
    assert stub.ask(f"p{len(X86_64.registers):x}").startswith("E")
    assert stub.ask("p").startswith("E") and stub.ask("Pzz=00").startswith("E")
    assert stub.ask("P0=0011").startswith("E")  # rax takes 8 bytes
    assert stub.ask("G0").startswith("E")
    assert stub.ask("G0011").startswith("E")  # two bytes: far short of the registers
    assert stub.ask("G" + changed[:-2]).startswith("E")  # one byte short
    assert stub.ask("P0=" + "00" * 9).startswith("E")  # rax takes 8 bytes, not 9
    assert regs_of(stub)["rbx"] == 42  # and none of the refused packets changed anything


@needs_kvm
def test_memory_read_and_written_at_linear_addresses(stub):
    assert bytes.fromhex(stub.ask(f"m{ENTRY:x},10")) == kernel_bytes(ENTRY, 16)
    scratch = 0x300000  # free RAM, identity-mapped
    assert stub.ask(f"M{scratch:x},4:deadbeef") == "OK"
    assert stub.ask(f"m{scratch:x},4") == "deadbeef"
    binary = b"}$#*\x03\x00\xff"
    stub.raw(frame(b"X%x,%x:" % (scratch, len(binary)) + binary))  # frame() escapes
    stub.expect_ack()
    assert stub.reply() == b"OK"
    assert bytes.fromhex(stub.ask(f"m{scratch:x},{len(binary):x}")) == binary
    assert stub.ask("mffff800000000000,4") == "E0e"  # not mapped by the guest
    assert stub.ask("Mffff800000000000,1:00") == "E0e"
    assert stub.ask("mzz,1").startswith("E") and stub.ask("m100000").startswith("E")
    assert stub.ask("m-1,4").startswith("E")
    assert stub.ask(f"M{scratch:x},4:00").startswith("E")  # fewer bytes than it says
    assert stub.ask(f"X{scratch:x},4:ab").startswith("E")


@needs_kvm
def test_step_and_vcont(stub):
    assert stub.ask("vCont?") == "vCont;c;C;s;S"
    assert stub.ask("s") == "T05thread:01;"
    after_one = regs_of(stub)["rip"]
    assert after_one > ENTRY
    assert stub.ask("vCont;s:1;c") == "T05thread:01;"
    assert regs_of(stub)["rip"] > after_one
    assert stub.ask("vCont;x").startswith("E")


@needs_kvm
def test_breakpoints_of_each_kind_stop_the_guest(stub):
    kmain, cpu_init = sym("kmain"), sym("cpu_init")
    assert stub.ask(f"Z0,{kmain:x},1") == "OK"
    assert stub.ask("c") == "T05thread:01;"
    assert regs_of(stub)["rip"] == kmain
    assert stub.ask(f"z0,{kmain:x},1") == "OK"
    assert bytes.fromhex(stub.ask(f"m{kmain:x},1")) == kernel_bytes(kmain, 1)  # no int3 seen
    assert stub.ask(f"Z1,{cpu_init:x},1") == "OK"
    assert stub.ask("c") == "T05thread:01;"
    assert regs_of(stub)["rip"] == cpu_init
    assert stub.ask(f"z1,{cpu_init:x},1") == "OK"
    tss_rsp0 = sym("tss_rsp0")
    assert stub.ask(f"Z2,{tss_rsp0:x},8") == "OK"
    assert stub.ask("c") == f"T05watch:{tss_rsp0:x};thread:01;"
    assert stub.ask(f"z2,{tss_rsp0:x},8") == "OK"
    assert stub.ask(f"Z3,{tss_rsp0:x},8") in ("OK", "")  # "" where reads cannot be watched
    assert stub.ask(f"z3,{tss_rsp0:x},8") in ("OK", "")
    assert stub.ask("Z9,0,1") == ""
    assert stub.ask("Z1,zz,1").startswith("E") and stub.ask("Z2,1000,0").startswith("E")
    assert stub.ask("Z1,-1,1").startswith("E") and stub.ask("Z1,10000000000000000,1")[0] == "E"
    assert stub.ask("c") == "W00"  # no bad breakpoint was kept: the guest ran to its end


@needs_kvm
def test_four_debug_registers_and_no_more(stub):
    for n in range(4):
        assert stub.ask(f"Z1,{ENTRY + 0x100 + n:x},1") == "OK"
    assert stub.ask(f"Z1,{ENTRY + 0x200:x},1") == "E1c"
    assert stub.ask(f"z1,{ENTRY + 0x100:x},1") == "OK"
    assert stub.ask(f"Z1,{ENTRY + 0x200:x},1") == "OK"


@needs_kvm
def test_ctrl_c_stops_the_running_guest(guest_build, tmp_path):
    prog = spinning_program(tmp_path)
    with pyvmm_gdb("--program", str(prog)) as vm:
        client = Client(vm.port)
        client.raw(frame(b"c"))
        client.expect_ack()
        client.sock.settimeout(1)
        with pytest.raises(TimeoutError):
            client.reply()  # running: no stop reply yet
        client.sock.settimeout(GDB_TIMEOUT)
        client.raw(b"\x03")
        assert client.reply() == b"T02thread:01;"
        client.raw(frame(b"k"))
        status, _, _ = vm.finish()
    assert status == 137


@needs_kvm
def test_detach_runs_the_guest_to_its_end(stub):
    assert stub.ask("D") == "OK"
    status, stdout, _ = stub.vm.finish()
    assert status == 0 and "hello from ring 3" in stdout


@needs_kvm
def test_continue_to_the_end_reports_the_exit_status(guest_build):
    with pyvmm_gdb("--cmdline", "-- 9") as vm:
        client = Client(vm.port)
        assert client.ask("c") == "W09"
        status, _, _ = vm.finish()
    assert status == 9


@needs_kvm
def test_no_ack_mode(stub):
    assert stub.ask("QStartNoAckMode") == "OK"
    stub.ack = False
    assert stub.ask("?") == "T05thread:01;"
    stub.raw(b"$?#00")  # a bad checksum, with no acks to ask for it again: an error
    assert stub.reply().startswith(b"E")


@needs_kvm
def test_malformed_and_oversized_packets_get_an_error_and_the_stub_goes_on(stub):
    stub.raw(b"$?#00")
    stub.expect_ack(b"-")  # ack mode: gdb would send it again
    stub.raw(frame(b"M100000,1:" + b"00" * PACKET_SIZE))
    stub.expect_ack()
    assert stub.reply().startswith(b"E")
    stub.raw(b"$m100000,1$?#3f")  # a packet cut short by the next
    stub.expect_ack()
    assert stub.reply().startswith(b"E")
    stub.expect_ack()
    assert stub.reply() == b"T05thread:01;"
    stub.raw(b"garbage between packets")
    assert stub.ask("?") == "T05thread:01;"
    assert stub.ask("") == ""  # an empty packet: nothing to do


@needs_kvm
def test_a_new_gdb_can_connect_after_one_goes_away(stub):
    assert stub.ask("s") == "T05thread:01;"
    rip = regs_of(stub)["rip"]
    stub.close()
    again = Client(stub.vm.port)
    assert again.ask("?") == "T05thread:01;"
    assert regs_of(again)["rip"] == rip  # still stopped where the first left it
    again.close()


@needs_kvm
def test_real_mode_guest_gets_the_i8086_layout(guest_build):
    with pyvmm_gdb("--kernel", LAB_BIN) as vm:
        client = Client(vm.port)
        xml = client.ask("qXfer:features:read:target.xml:0,3fff")
        assert "<architecture>i8086</architecture>" in xml
        regs = regs_of(client, I8086)
        assert regs["eip"] == 0x7C00 and regs["cs"] == 0
        assert bytes.fromhex(client.ask("m7c00,1")) == b"\xfa"  # cli, through paging off
        client.raw(frame(b"k"))  # no reply: pyvmm ends
