"""``pyvmm bench net``: TCP between a test host and a server, on loopback and in VMs.

Everything happens in a network namespace the benchmark makes (vmm/hostnet/netns.py): a bridge
with the host's address, and a persistent TAP on it that each VM in turn attaches to.
The server is busybox's ``nc`` in every row (vmm/guests/linux.py ``NET_SERVICES``: echo
on 7, discard on 9, a 4 MiB source on 19), the same static program on the host and in
the guests, which run the same kernel and initramfs:

- host loopback: the services in the namespace itself, the client on 127.0.0.1;
- pyvmm container: the services in a container on a pyvmm network (a bridge and a
  veth), reached at its address, and through ports published on the host's (-p);
- ``podman run -p`` with runc, the same image, through Podman's own bridge network;
- Linux VM, pyvmm: ``pyvmm boot --net tap=TAP`` (virtio-net, its data plane in Python
  on pyvmm's I/O thread), with the offloads and without (``offload=off``);
- Linux VM, QEMU microvm: ``-netdev tap,vhost=off`` with ``virtio-net-device``, QEMU's
  data plane in C on its main loop;
- with /dev/vhost-net, both VMs again with the host kernel's data plane
  (``--net ...,vhost=on``, ``-netdev tap,vhost=on``). A host without it (this one: its
  kernel has no vhost_net) runs no vhost row, and asking for one is an error.

Figures: the round-trip time of one byte on an open connection (request/response
latency; a run's figure is the median of its round trips), and bulk MiB/s host to
guest (discard) and guest to host (source), per connection including its set-up;
medians of the runs. Each row boots once (a Linux boot under PVM takes a minute) and
runs all its runs; the rows follow one another, so a change in the machine's load
between rows shows in their ratio: run it on a quiet machine.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vmm.bench.measure import pyvmm_command, summary
from vmm.container.linux.fdtree import remove_tree
from vmm.devices.virtio.vhost import VHOST_NET_DEVICE as VHOST_NET
from vmm.errors import PyvmmError
from vmm.hostnet import netns

BRIDGE, TAP = "br0", "vmtap0"
HOST_IP, GUEST_IP, PREFIX = "10.0.2.1", "10.0.2.15", 24
# The kernel's own static configuration (Documentation/admin-guide/nfs/nfsroot.rst
# "ip="): client:server:gateway:netmask:hostname:device:autoconf.
GUEST_IP_PARAM = f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off"
GUEST_MAC = "52:54:00:12:34:56"
GUEST_MEMORY = "256M"
UPLOAD_BYTES = 4 << 20
ROUNDS = 200  # round trips per latency run
READY_TIMEOUT = 600.0  # a Linux boot under PVM takes tens of seconds; loaded, more


class Server:
    """A process started in the namespace, serving once ``ready`` appears on its stdout;
    its output is kept for a report if it never does. Stopped with SIGINT (pyvmm and
    QEMU both end cleanly on it), killed if that is not enough."""

    def __init__(self, ns: str, argv: list[str], ready: bytes, timeout: float = READY_TIMEOUT,
                 env: dict | None = None):  # fmt: skip
        self.argv = argv
        self.output = bytearray()
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            netns.command(ns, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not self._ready.wait(timeout) or ready not in self.output:
            self.stop()
            tail = self.output[-1500:].decode(errors="replace")
            raise PyvmmError(f"{argv[0]} did not start serving: ...{tail}")

    def _read(self, ready: bytes) -> None:
        while data := os.read(self.proc.stdout.fileno(), 65536):
            self.output += data
            if ready in self.output:
                self._ready.set()
        self._ready.set()  # ended: wake the waiter, which sees the exit

    def stop(self) -> int:
        """SIGINT, then SIGKILL to whatever is left of its process group (a shell's
        background jobs ignore SIGINT): nothing outlives the namespace."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        return self.proc.returncode


def guest_cmdline(pvm: bool) -> str:
    from vmm.boot import linux

    return linux.command_line(f"console=ttyS0 {GUEST_IP_PARAM}", (), pvm)


def pyvmm_vm(build, initramfs: str, pvm: bool, net: str) -> list[str]:
    return [
        *pyvmm_command(), "boot", "--kernel", build.vmlinux, "--initrd", initramfs,
        "--memory", GUEST_MEMORY, "--cmdline", guest_cmdline(pvm), "--net", net,
    ]  # fmt: skip


def qemu_vm(build, initramfs: str, pvm: bool, vhost: bool = False) -> list[str]:
    return [
        "qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host",
        "-m", GUEST_MEMORY, "-smp", "1", "-nodefaults", "-no-user-config",
        "-display", "none", "-serial", "stdio",
        "-kernel", build.vmlinux, "-initrd", initramfs, "-append", guest_cmdline(pvm),
        "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost={_on(vhost)}",
        "-device", f"virtio-net-device,netdev=n0,mac={GUEST_MAC}",
    ]  # fmt: skip


def _on(flag: bool) -> str:
    return "on" if flag else "off"


# The client side, in this process (its sockets made inside the namespace).


def connect(ns: str, addr: str, port: int, timeout: float = 60.0) -> socket.socket:
    with netns.entered(ns):
        sock = socket.create_connection((addr, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips(ns: str, addr: str, rounds: int = ROUNDS, port: int | None = None) -> list[float]:
    """Seconds per one-byte round trip through the echo service (or a port published
    to it)."""
    from vmm.guests.linux import ECHO_PORT

    times = []
    with connect(ns, addr, port or ECHO_PORT) as sock:
        for i in range(rounds):
            byte = bytes([i & 0xFF])
            t = time.perf_counter()
            sock.sendall(byte)
            if sock.recv(1) != byte:
                raise PyvmmError(f"echo from {addr} returned the wrong byte")
            times.append(time.perf_counter() - t)
    return times


def upload(ns: str, addr: str, nbytes: int = UPLOAD_BYTES) -> float:
    """MiB/s to the discard service, until it has read everything and closed."""
    from vmm.guests.linux import DISCARD_PORT

    chunk = bytes(64 << 10)
    t = time.perf_counter()
    with connect(ns, addr, DISCARD_PORT) as sock:
        for _ in range(nbytes // len(chunk)):
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return nbytes / (time.perf_counter() - t) / (1 << 20)


def download(ns: str, addr: str) -> float:
    """MiB/s from the source service, whose every byte must arrive."""
    from vmm.guests.linux import CHARGEN_BYTES, CHARGEN_PORT

    received = 0
    t = time.perf_counter()
    with connect(ns, addr, CHARGEN_PORT) as sock:
        while data := sock.recv(1 << 20):
            received += len(data)
    elapsed = time.perf_counter() - t
    if received != CHARGEN_BYTES:
        raise PyvmmError(f"{addr} sent {received} bytes, not {CHARGEN_BYTES}")
    return received / elapsed / (1 << 20)


def _run_once(ns: str, key: str, addr: str, samples: dict[str, list[float]]) -> None:
    """One run of the three figures for row ``key``. A server that stops answering (a
    VM starved on a loaded machine: the client's socket times out) ends the benchmark
    with one line naming the row, not a traceback."""
    try:
        samples["rtt_us"].append(statistics.median(round_trips(ns, addr)) * 1e6)
        samples["upload_mib_s"].append(upload(ns, addr))
        samples["download_mib_s"].append(download(ns, addr))
    except OSError as e:
        raise PyvmmError(f"bench net: {LABELS[key]} at {addr}: {e.strerror or e}") from None


def _add_tap(ns: str) -> None:
    """The persistent TAP on the bridge that each VM in turn attaches to."""
    from pyroute2 import NetNS

    with NetNS(ns) as ipr:
        ipr.link("add", ifname=TAP, kind="tuntap", mode="tap")
        bridge = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.link("set", index=ipr.link_lookup(ifname=TAP)[0], master=bridge, state="up")


def measure(runs: int = 5, only: tuple[str, ...] = ()) -> dict:
    """Figures for every row (or those in ``only``), the rows taking turns run by run."""
    from vmm.bench.machineinfo import kvm_kind
    from vmm.guests import linux as linux_guest

    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        raise PyvmmError("bench net needs root and /dev/net/tun (a namespace of its own)")

    def wanted(*keys: str) -> bool:
        return not only or bool(set(only) & set(keys))

    vhost = os.path.exists(VHOST_NET)
    if not vhost and set(only) & set(VHOST_ROWS):
        raise PyvmmError(f"this host has no {VHOST_NET}: the vhost rows cannot run")

    with contextlib.ExitStack() as stack:
        rows = {"loopback": (["sh", "-c", linux_guest.NET_SERVICES + "wait\n"], "127.0.0.1")}
        stops: dict[str, list[str]] = {}  # what ends a row's server first (a container's)
        store = podman = None
        if wanted(*CONTAINER_ROWS, "podman"):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyvmm-bench-net-")))
            stack.callback(_remove, tmp / "store")  # before the directory goes
            store = _container_store(tmp)
        if wanted(*CONTAINER_ROWS):
            for key, (address, publish) in CONTAINER_ROWS.items():
                rows[key] = (_container_server(store, key, publish), address)
                stops[key] = [*pyvmm_command(), "--root", store, "container", "rm", "-f", key]
        if wanted("podman") and shutil.which("podman") and shutil.which("runc"):
            podman = stack.enter_context(_podman(tmp))
            rows["podman"] = (_podman_server(podman), HOST_IP)
            stops["podman"] = podman.command("rm", "-f", "bench-net")
        if wanted("pyvmm", "pyvmm_no_offload", "qemu", *VHOST_ROWS):
            build = linux_guest.build_kernel(say=lambda m: None)
            initramfs = linux_guest.build_initramfs()
            pvm = kvm_kind()["kind"] == "pvm"
            net = f"tap={TAP},mac={GUEST_MAC}"
            rows["pyvmm"] = (pyvmm_vm(build, initramfs, pvm, net), GUEST_IP)
            no_offload = pyvmm_vm(build, initramfs, pvm, net + ",offload=off")
            rows["pyvmm_no_offload"] = (no_offload, GUEST_IP)
            rows["qemu"] = (qemu_vm(build, initramfs, pvm), GUEST_IP)
            if vhost:
                rows["pyvmm_vhost"] = (pyvmm_vm(build, initramfs, pvm, net + ",vhost=on"), GUEST_IP)
                rows["qemu_vhost"] = (qemu_vm(build, initramfs, pvm, vhost=True), GUEST_IP)
        rows = {k: v for k, v in rows.items() if not only or k in only}
        ready = linux_guest.NET_LINE.encode()
        samples: dict[str, dict[str, list[float]]] = {
            k: {"rtt_us": [], "upload_mib_s": [], "download_mib_s": []} for k in rows
        }
        boots: dict[str, list[float]] = {k: [] for k in rows}
        with netns.scratch(BRIDGE, f"{HOST_IP}/{PREFIX}") as ns:
            _add_tap(ns)
            if store is not None:
                _in(ns, [*pyvmm_command(), "--root", store, "network", "create",
                         "--subnet", CONTAINER_SUBNET, "benchnet"])  # fmt: skip
            # One boot per row (a Linux boot under PVM is a minute), the runs inside it.
            for key, (argv, addr) in rows.items():
                t = time.perf_counter()
                server = Server(ns, argv, ready, env=podman.env if key == "podman" else None)
                try:
                    boots[key].append(time.perf_counter() - t)
                    _wait_for_echo(ns, addr)
                    for _ in range(runs):
                        _run_once(ns, key, addr, samples[key])
                finally:
                    if key in stops:  # a container's init (a shell, PID 1) ignores SIGINT
                        _in(ns, stops[key], check=False, env=podman.env if podman else None)
                    server.stop()
            if store is not None:
                _in(ns, [*pyvmm_command(), "--root", store, "network", "rm", "benchnet"])
    return {
        "runs": runs,
        "rounds": ROUNDS,
        "upload_bytes": UPLOAD_BYTES,
        "download_bytes": linux_guest.CHARGEN_BYTES,
        "vhost_net": vhost,
        "rows": {k: {m: summary(v) for m, v in s.items()} for k, s in samples.items()},
        "ready_s": {k: summary(v) for k, v in boots.items()},
    }


# The container rows: the same services in a pyvmm container (busybox's image, the same
# static busybox) on a pyvmm network of its own, reached at the container's address
# (the first its IPAM hands out) and through ports published on the host's address;
# and the yardstick, ``podman run -p`` with runc (Podman's own bridge and netavark's
# DNAT, in the same namespace) of the same image.
CONTAINER_SUBNET = "10.0.3.0/24"
CONTAINER_ROWS = {"container": ("10.0.3.2", False), "container_published": (HOST_IP, True)}


def _container_store(tmp: Path) -> str:
    """A state root of the benchmark's own with the busybox image, and the same image
    with the workload as an OCI archive for Podman (scripts/build_images.py)."""
    store = str(tmp / "store")
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, str(repo / "scripts" / "build_images.py"), "--root", store,
         "--workload", "/bin/busybox", "--oci-archive", str(tmp / "image.tar")],
        check=True, capture_output=True,
    )  # fmt: skip
    return store


def _remove(path: Path) -> None:
    """The store's tree, by the store's own walk (no recursion), if it was made."""
    with contextlib.suppress(FileNotFoundError):
        remove_tree(path)


def _published() -> list[str]:
    from vmm.guests import linux as linux_guest

    ports = [linux_guest.ECHO_PORT, linux_guest.DISCARD_PORT, linux_guest.CHARGEN_PORT]
    return [a for p in ports for a in ("-p", f"{p}:{p}")]


def _serve() -> list[str]:
    from vmm.guests import linux as linux_guest

    return ["sh", "-c", linux_guest.NET_SERVICES + "wait\n"]


def _container_server(store: str, name: str, published: bool) -> list[str]:
    return [
        *pyvmm_command(), "--root", store, "container", "run", "--name", name,
        "--network", "benchnet", *(_published() if published else []), "busybox", *_serve(),
    ]  # fmt: skip


@contextlib.contextmanager
def _podman(tmp: Path):
    """A private Podman (vmm/bench/containers.py) with the image loaded."""
    from vmm.bench.containers import private_podman

    with private_podman(tmp / "podman") as podman:
        subprocess.run(podman.command("load", "-i", str(tmp / "image.tar")), env=podman.env,
                       check=True, capture_output=True)  # fmt: skip
        yield podman


def _podman_server(podman) -> list[str]:
    from vmm.bench.containers import IMAGE

    return podman.command("run", "--name", "bench-net", *_published(), IMAGE, *_serve(),
                          runtime="runc")  # fmt: skip


def _in(ns: str, argv: list[str], check: bool = True, env: dict | None = None) -> None:
    proc = subprocess.run(netns.command(ns, argv), capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise PyvmmError(f"{' '.join(argv[:4])}...: {proc.stderr.strip()}")


def _wait_for_echo(ns: str, addr: str, timeout: float = 60.0) -> None:
    """The services start just before the ready line: wait until echo answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            round_trips(ns, addr, 1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            select.select([], [], [], 0.1)


LABELS = {
    "loopback": "host loopback (busybox nc in the namespace)",
    "container": "pyvmm container, bridge network, its address",
    "container_published": "pyvmm container, published port (-p, DNAT)",
    "podman": "podman run -p, runc (netavark bridge, DNAT)",
    "pyvmm": "Linux VM, pyvmm virtio-net on TAP",
    "pyvmm_no_offload": "Linux VM, pyvmm virtio-net, offload=off",
    "qemu": "Linux VM, QEMU microvm virtio-net on TAP, vhost=off",
    "pyvmm_vhost": "Linux VM, pyvmm virtio-net, vhost=on",
    "qemu_vhost": "Linux VM, QEMU microvm virtio-net, vhost=on",
}
VHOST_ROWS = ("pyvmm_vhost", "qemu_vhost")


# (row, yardstick row, label): the ratios the table ends with.
RATIOS = [
    ("container_published", "podman", "pyvmm container -p / podman -p"),
    ("pyvmm", "qemu", "pyvmm / QEMU"),
    ("pyvmm_vhost", "qemu_vhost", "pyvmm / QEMU, both vhost=on"),
]


def table(r: dict) -> str:
    rows = r["rows"]
    lines = [f"{'TCP, test host to server':<52}{'RTT us':>9}{'up MiB/s':>10}{'down MiB/s':>11}"]
    for key, figures in rows.items():
        rtt, up, down = (figures[m]["median"] for m in ("rtt_us", "upload_mib_s", "download_mib_s"))
        lines.append(f"  {LABELS[key]:<50}{rtt:9.0f}{up:10.2f}{down:11.2f}")
    for mine, theirs, label in RATIOS:
        if mine in rows and theirs in rows:
            p, q = rows[mine], rows[theirs]
            ratio = [
                p[m]["median"] / q[m]["median"]
                for m in ("rtt_us", "upload_mib_s", "download_mib_s")
            ]
            lines.append(f"  {label:<50}{ratio[0]:8.2f}x{ratio[1]:9.2f}x{ratio[2]:10.2f}x")
    lines.append(
        f"medians of {r['runs']} runs ({r['rounds']} round trips each; "
        f"{r['upload_bytes'] >> 20} MiB up, {r['download_bytes'] >> 20} MiB down); "
        f"/dev/vhost-net {'present' if r['vhost_net'] else 'absent: no vhost rows'}"
    )
    return "\n".join(lines)
