"""Container networks, Docker's bridge model: a bridge per network, a veth per container.

``pyvmm network create NAME`` records a network (``networks/NAME/network.json``: its
subnet, gateway and the addresses handed out, IPAM) and makes its Linux bridge, with
the gateway address on it, and an nft table that masquerades what the containers send
out of any other interface. The network ``bridge`` (Docker's default network's name
and, when free, its subnet, 172.17.0.0/16) is made the same way on its first use.

A container run with ``--network NAME`` gets, at create, a network namespace of its own
that pyvmm makes and names (``/run/netns/pyvmm-c-ID``), as Podman does; its path goes
into the bundle's config.json, where the OCI core joins it (``setns``) like any
namespace path. In it: ``lo``, and ``eth0``, one end of a veth pair whose other end is
on the bridge; eth0's address comes from the network's IPAM (allocated under the store
lock), with a default route through the gateway. ``-p`` publishes its ports through
nftables DNAT (``vmm/hostnet/publish.py``), 127.0.0.1 included. The container's endpoint record
(``endpoints/ID.json``) says what was made, so that ``rm``, and the sweep that removes
what a killed pyvmm left (``remove_orphans``), undo exactly that.

A container that is created but not started, or that stops (it exited, or the pyvmm
supervising it was killed and ``reconcile`` found out), holds no address and no port, as
with Docker and Podman: ``create`` makes its namespace, /etc files and record only, a
stop takes its veth, port table and address away (``unplug``), and ``start`` plugs it in
(``plug``), with the lowest free address, once its ports are free.

``--network none``: a namespace of its own with ``lo`` only (named too, so that another
container may join it); ``host``: the host's (no network namespace); ``container:NAME``:
that container's. Without ``--network`` a container keeps what pyvmm always gave it, a
new namespace with ``lo`` only: Docker's default is ``bridge``, but making that the
default would change the network of every host pyvmm runs a container on.

Netlink goes through pyroute2 and NAT through nft's JSON (docs/networking.md says why);
everything here acts in the network namespace pyvmm itself runs in: the tests run it
in one of their own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from vmm.container.store import records
from vmm.container.store.names import check_name, checker
from vmm.container.store.records import Broken
from vmm.errors import PyvmmError
from vmm.hostnet import publish

RECORD = "network.json"
ENDPOINT = "endpoint.json"
# What a container on a network pyvmm made gets in /etc, written beside its endpoint
# record and bind-mounted over the image's, as Docker does.
ETC_FILES = ("hosts", "hostname", "resolv.conf")
HOST_RESOLV_CONF = "/etc/resolv.conf"
# Docker's nameservers for a container when the host's are all its own loopback ones.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
DEFAULT_NETWORK = "bridge"
NETNS_DIR = "/run/netns"  # where ``ip netns`` (and pyroute2) name namespaces
IFNAMSIZ = 16  # linux/if.h: an interface name is at most 15 bytes and a NUL


class NetworkError(PyvmmError):
    pass


def _check_subnet(text: str) -> str:
    net = ipaddress.IPv4Network(text)  # ValueError for a host address or garbage
    if net.prefixlen > 30:
        raise ValueError(f"subnet {text} has no room for a gateway and a container")
    return str(net)


def _check_address(text: str) -> str:
    return str(ipaddress.IPv4Address(text))


def _check_ifname(text: str) -> str:
    if not 0 < len(text.encode()) < IFNAMSIZ or "/" in text or text.strip() != text:
        raise ValueError(f"{text!r:.40} is not an interface name")
    return text


def _check_id(text: str) -> str:
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise ValueError(f"{text!r:.80} is not an id (64 hex digits)")
    return text


Subnet = Annotated[str, _check_subnet]
Address = Annotated[str, _check_address]
IfName = Annotated[str, _check_ifname]
Id = Annotated[str, _check_id]


@dataclass
class NetworkRecord:
    """``networks/NAME/network.json``: the network and its IPAM, the addresses it has
    handed out by container id."""

    name: Annotated[str, checker("network")]
    id: Id
    bridge: IfName
    subnet: Subnet
    gateway: Address
    created: float
    addresses: dict[str, Address] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The bridge is deleted by name on rm: a record naming another interface (the
        # host's own) is refused, not obeyed.
        if self.bridge != bridge_name(self.id):
            raise ValueError(f"bridge {self.bridge!r} is not this network's")


@dataclass
class EndpointRecord:
    """``endpoints/ID/endpoint.json``: what one container's network is, and what pyvmm
    made for it (each removed by ``disconnect``, whichever exist)."""

    container: Id
    mode: str  # "network" (a bridge network), "none", "host", "container"
    name: Annotated[str, checker("container")]
    hostname: Annotated[str, checker("hostname")]
    network: str | None = None  # the network's name (mode "network")
    address: Address | None = None
    veth: IfName | None = None  # the host end; the container's is eth0
    netns: Annotated[str, checker("netns")] | None = None  # a name under /run/netns
    joined: Id | None = None  # mode "container": whose namespace
    ports: list[publish.Publish] = field(default_factory=list)
    ports_table: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("network", "none", "host", "container"):
            raise ValueError(f"mode {self.mode!r} is not network, none, host or container")
        # What is deleted by name on rm must be what pyvmm named for this container: a
        # record naming another interface, namespace or nft table is refused.
        names = made_names(self.container)
        for key in ("veth", "netns", "ports_table"):
            if getattr(self, key) not in (None, names[key]):
                raise ValueError(f"{key} {getattr(self, key)!r:.40} is not this container's")


def bridge_name(network_id: str) -> str:
    return f"pvbr-{network_id[:10]}"


def made_names(cid: str) -> dict[str, str]:
    """The names of what pyvmm makes for container ``cid``: the host end of its veth,
    its namespace under /run/netns, its published ports' nft table."""
    return {"veth": f"pvv{cid[:12]}", "netns": f"pyvmm-c-{cid[:16]}",
            "ports_table": f"pyvmm-c-{cid[:12]}"}  # fmt: skip


def load(store, name: str) -> NetworkRecord | Broken:
    return records.load(store.networks / name / RECORD, NetworkRecord, name=name)


def get(store, name: str) -> NetworkRecord:
    """Network ``name``'s record; a one-line error if there is none or it is broken."""
    check_name("network", name)
    if not (store.networks / name).is_dir():
        raise NetworkError(f"no such network: {name}")
    rec = load(store, name)
    if isinstance(rec, Broken):
        raise NetworkError(f"network {name} is broken ({rec.reason}): remove it")
    return rec


def list_networks(store) -> list[tuple[str, NetworkRecord | Broken]]:
    with contextlib.suppress(FileNotFoundError):
        return [(n, load(store, n)) for n in sorted(os.listdir(store.networks))]
    return []


def _save(store, rec: NetworkRecord) -> None:
    records.write(store.networks / rec.name / RECORD, rec)


def create(store, name: str, subnet: str | None = None) -> NetworkRecord:
    """Record network ``name`` and make its bridge; caller locks."""
    check_name("network", name)
    if name in ("none", "host"):
        raise NetworkError(f"network name {name} is a --network mode of its own")
    if (store.networks / name).exists():
        raise NetworkError(f"network {name} already exists")
    taken = [ipaddress.IPv4Network(r.subnet) for _, r in records.loaded(list_networks(store))]
    if subnet is None:
        net = _free_subnet(taken)
    else:
        try:
            net = ipaddress.IPv4Network(_check_subnet(subnet))
        except ValueError as e:
            raise NetworkError(f"--subnet {subnet}: {e}") from None
        clash = [str(t) for t in taken if t.overlaps(net)]
        if clash:
            raise NetworkError(f"--subnet {net} overlaps network subnet {clash[0]}")
    nid = secrets.token_hex(32)
    rec = NetworkRecord(
        name=name, id=nid, bridge=bridge_name(nid), subnet=str(net),
        gateway=str(net.network_address + 1), created=time.time(),
    )  # fmt: skip
    store.networks.mkdir(parents=True, exist_ok=True)
    os.mkdir(store.networks / name, 0o700)
    try:
        _save(store, rec)
        _make_bridge(rec)
    except BaseException:
        _remove_network(store, rec)
        raise
    return rec


def _free_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first of 172.17.0.0/16 (Docker's default network's), 172.18.0.0/16, ...
    172.31.0.0/16 that no network of this store's has (Docker also skips those the
    host routes; pyvmm does not look yet: give --subnet where they clash)."""
    for second in range(17, 32):
        net = ipaddress.IPv4Network(f"172.{second}.0.0/16")
        if not any(t.overlaps(net) for t in taken):
            return net
    raise NetworkError("every subnet of 172.16.0.0/12 is taken: give one with --subnet")


def remove(store, name: str) -> None:
    """Delete network ``name`` and its bridge, refused while containers are on it."""
    if name == DEFAULT_NETWORK:
        raise NetworkError(f"{name} is the default network and cannot be removed")
    check_name("network", name)
    if not (store.networks / name).is_dir():
        raise NetworkError(f"no such network: {name}")
    rec = load(store, name)
    if isinstance(rec, Broken):  # nothing it names can be trusted: only the record goes
        _forget_record(store, name)
        return
    # A stopped container's too, which holds no address: its start would find the
    # network gone (Podman's rule).
    named = [e for e in _all_endpoints(store) if not isinstance(e, Broken) and e.network == name]
    users = {*rec.addresses, *(e.container for e in named)}
    if users:
        listed = ", ".join(sorted(c[:12] for c in users))
        raise NetworkError(f"network {name} is in use by container(s) {listed}")
    _remove_network(store, rec)


def _forget_record(store, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(store.networks / name / RECORD)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(store.networks / name)


def _remove_network(store, rec: NetworkRecord) -> None:
    from pyroute2 import IPRoute

    publish.delete_table(_masquerade_table(rec))
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=rec.bridge):
            ipr.link("del", index=index)
    _forget_record(store, rec.name)


def _masquerade_table(rec: NetworkRecord) -> str:
    return f"pyvmm-n-{rec.id[:12]}"


def _sysctl(path: str, value: str) -> None:
    """A sysctl of the network namespace pyvmm runs in."""
    with open(f"/proc/sys/net/ipv4/{path}", "w") as f:
        f.write(value)


def _make_bridge(rec: NetworkRecord) -> None:
    """The network's bridge with the gateway on it, up, and its masquerade table; made
    again if missing (the host restarted since), left as it is if present."""
    from pyroute2 import IPRoute

    net = ipaddress.IPv4Network(rec.subnet)
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=rec.bridge):
            ipr.link("add", ifname=rec.bridge, kind="bridge")
            index = ipr.link_lookup(ifname=rec.bridge)[0]
            ipr.addr("add", index=index, address=rec.gateway, prefixlen=net.prefixlen)
            ipr.link("set", index=index, state="up")
    # Forwarding, for containers' traffic to other networks (Docker turns it on too),
    # and 127.0.0.1 routed to the bridge, for ports published on it (publish.py).
    _sysctl("ip_forward", "1")
    _sysctl(f"conf/{rec.bridge}/route_localnet", "1")
    table = _masquerade_table(rec)
    source = {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    publish.delete_table(table)
    publish.nft({"nftables": [
        {"add": {"table": {"family": "ip", "name": table}}},
        publish.chain(table, "postrouting", publish.SNAT_PRIORITY),
        {"add": {"rule": {"family": "ip", "table": table, "chain": "postrouting", "expr": [
            publish.match({"payload": {"protocol": "ip", "field": "saddr"}}, source),
            publish.match({"meta": {"key": "oifname"}}, rec.bridge, "!="),
            {"masquerade": None},
        ]}}},
    ]})  # fmt: skip


# --- a container's endpoint ------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """``--network`` parsed: its kind, and the network or container it names."""

    kind: str  # "network", "none", "host", "container"
    name: str | None = None


def parse_mode(text: str) -> Mode:
    if text in ("none", "host"):
        return Mode(text)
    if text.startswith("container:"):
        return Mode("container", check_name("container", text.removeprefix("container:")))
    return Mode("network", check_name("network", text))


def plan(mode: str | None, ports: tuple[str, ...]) -> tuple[Mode, list[publish.Publish]]:
    """``--network`` and ``-p`` checked, before anything is made: ``-p`` alone means
    the default network, as in Docker."""
    parsed = [publish.parse_publish(p) for p in ports]
    return parse_mode(mode or DEFAULT_NETWORK), parsed


def _endpoint_dir(store, cid: str) -> Path:
    return store.endpoints / cid


def endpoint(store, cid: str) -> EndpointRecord | Broken | None:
    path = _endpoint_dir(store, cid) / ENDPOINT
    if not path.exists():
        return None
    return records.load(path, EndpointRecord, container=cid)


def _save_endpoint(store, ep: EndpointRecord) -> None:
    records.write(_endpoint_dir(store, ep.container) / ENDPOINT, ep)


def namespace(store, cid: str) -> dict | None:
    """The container's network namespace entry for config.json: ``{"type": "network"}``
    (a new one) without an endpoint, with its path where pyvmm made it or the joined
    container's, None for the host's."""
    ep = endpoint(store, cid)
    if ep is None or isinstance(ep, Broken):
        return {"type": "network"}
    if ep.mode == "host":
        return None
    if ep.mode == "container":
        joined = endpoint(store, ep.joined)
        if joined is None or isinstance(joined, Broken) or joined.netns is None:
            raise NetworkError(f"the container whose network {cid[:12]} joined is gone")
        return {"type": "network", "path": f"{NETNS_DIR}/{joined.netns}"}
    return {"type": "network", "path": f"{NETNS_DIR}/{ep.netns}"}


def connect(
    store, container, mode: Mode, ports: list[publish.Publish], attach: bool = True
) -> EndpointRecord:
    """Make ``container``'s (a ContainerRecord's) network as ``mode`` says: its record,
    namespace and /etc files, and with ``attach`` (a container started at once) its
    address, veth and ports, which a created one gets only at start (``plug``), as in
    Docker; caller locks. On failure, nothing made is left."""
    cid = container.id
    if ports and mode.kind != "network":
        raise NetworkError(f"-p with --network {mode.kind}: only a bridge network publishes")
    ep = EndpointRecord(container=cid, mode=mode.kind, name=container.name,
                        hostname=container.hostname, ports=list(ports),
                        network=mode.name if mode.kind == "network" else None)  # fmt: skip
    if mode.kind == "container":
        try:
            joined_id = _check_id(os.readlink(store.names / mode.name))
        except (OSError, ValueError):
            raise NetworkError(f"--network container:{mode.name}: no such container") from None
        joined = endpoint(store, joined_id)
        if joined is None or isinstance(joined, Broken) or joined.netns is None:
            raise NetworkError(
                f"--network container:{mode.name}: it has no network namespace of pyvmm's "
                "to join (run it with --network)"
            )
        ep.joined = joined_id
    if mode.kind == "network":
        _check_ports_free(store, ports)
        if mode.name == DEFAULT_NETWORK and not (store.networks / mode.name).exists():
            create(store, DEFAULT_NETWORK)
        get(store, mode.name)
    if mode.kind in ("network", "none"):
        ep.netns = made_names(cid)["netns"]
    store.endpoints.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(_endpoint_dir(store, cid), 0o700)
    _save_endpoint(store, ep)  # first: what is made is known
    try:
        if ep.netns is not None:
            _make_namespace(ep.netns)
            _write_etc(store, ep)
        if mode.kind == "network" and attach:
            _attach(store, ep)
    except BaseException:
        disconnect(store, cid)
        raise
    return ep


def _attach(store, ep: EndpointRecord) -> None:
    """An address for ``ep``, its veth on the bridge and its published ports, each
    recorded before it is made."""
    net = get(store, ep.network)
    ep.address = _allocate(store, net, ep.container)
    ep.veth = made_names(ep.container)["veth"]
    _save_endpoint(store, ep)
    _make_bridge(net)
    _plug(net, ep)
    if ep.ports:
        ep.ports_table = made_names(ep.container)["ports_table"]
        _save_endpoint(store, ep)
        publish.PortTable(ep.address, ep.ports, ep.ports_table, net.bridge)
    _refresh_hosts(store, net.name)


def plug(store, cid: str) -> None:
    """At start: give a created or stopped container on a bridge network its address,
    veth and ports (what ``unplug`` took), refused in one line if its ports are taken by
    now; caller locks."""
    ep = endpoint(store, cid)
    if isinstance(ep, Broken):
        raise NetworkError(f"container {cid[:12]}'s network record is broken ({ep.reason})")
    if ep is None or ep.mode != "network" or ep.address is not None:
        return
    _check_ports_free(store, ep.ports)
    try:
        _attach(store, ep)
    except BaseException:
        unplug(store, cid)
        raise


def unplug(store, cid: str) -> None:
    """A stopped container's veth, port table and address go; its namespace, /etc
    files and endpoint record stay, for ``plug``; caller locks."""
    ep = endpoint(store, cid)
    if not isinstance(ep, EndpointRecord) or ep.mode != "network":
        return  # a broken one is undone whole by rm
    if ep.ports_table:
        publish.delete_table(ep.ports_table)
    if ep.veth:
        _delete_link(ep.veth)
    _release_address(store, cid)
    ep.address = ep.veth = ep.ports_table = None
    _save_endpoint(store, ep)
    _refresh_hosts(store, ep.network)


def _write_etc(store, ep: EndpointRecord) -> None:
    """The container's /etc/hostname and /etc/resolv.conf, and a first /etc/hosts."""
    where = _endpoint_dir(store, ep.container)
    _write_file(where / "hostname", f"{ep.hostname}\n")
    _write_file(where / "resolv.conf", resolv_conf())
    _write_file(where / "hosts", _hosts(ep, []))


def resolv_conf() -> str:
    """The host's resolv.conf less its loopback nameservers, which a container cannot
    reach (Docker's rule); Docker's fallback servers if none is left."""
    try:
        with open(HOST_RESOLV_CONF, "rb") as f:
            lines = f.read(64 << 10).decode(errors="replace").splitlines()
    except OSError:
        lines = []
    kept = [
        line for line in lines
        if not (line.split()[:1] == ["nameserver"] and _loopback(line.split()[1:2]))
    ]  # fmt: skip
    if not any(line.split()[:1] == ["nameserver"] for line in kept):
        kept += [f"nameserver {a}" for a in FALLBACK_NAMESERVERS]
    return "\n".join(kept) + "\n"


def _loopback(words: list[str]) -> bool:
    try:
        return bool(words) and ipaddress.ip_address(words[0]).is_loopback
    except ValueError:
        return False


def _hosts(ep: EndpointRecord, peers: list[EndpointRecord]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if ep.address is not None:
        lines.append(f"{ep.address}\t{ep.hostname} {ep.name}".rstrip())
    else:
        lines.append(f"127.0.1.1\t{ep.hostname}")
    lines += [f"{p.address}\t{p.name}" for p in peers]
    return "\n".join(lines) + "\n"


def _write_file(path: Path, text: str) -> None:
    """Written in place, not replaced: a running container has this very file
    bind-mounted, and a new inode would not reach it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _refresh_hosts(store, network: str) -> None:
    """Every container's /etc/hosts on a user-defined ``network`` names all the others
    on it: Docker resolves them with its embedded DNS server; pyvmm keeps /etc/hosts
    current instead (on each connect and disconnect). The default network resolves
    none, as Docker's does not."""
    members = [
        e for e in _all_endpoints(store)
        if not isinstance(e, Broken) and e.network == network and e.address is not None
        and (_endpoint_dir(store, e.container) / "hosts").exists()
    ]  # fmt: skip
    for ep in members:
        peers = [] if network == DEFAULT_NETWORK else [p for p in members if p is not ep]
        _write_file(_endpoint_dir(store, ep.container) / "hosts", _hosts(ep, peers))


def rename(store, cid: str, name: str) -> None:
    """A renamed container's endpoint, and every /etc/hosts that names it; caller locks."""
    ep = endpoint(store, cid)
    if ep is None or isinstance(ep, Broken):
        return
    ep.name = name
    _save_endpoint(store, ep)
    if ep.network is not None:
        _refresh_hosts(store, ep.network)


def binds(store, cid: str) -> list[dict]:
    """config.json mounts of the container's /etc files, where pyvmm wrote them (for
    ``container:NAME``, the joined container's, as Docker shares them)."""
    ep = endpoint(store, cid)
    if ep is None or isinstance(ep, Broken) or ep.mode == "host":
        return []
    where = _endpoint_dir(store, ep.joined if ep.mode == "container" else cid)
    return [
        {"destination": f"/etc/{name}", "type": "bind", "source": str(where / name),
         "options": ["rbind", "rw"]}
        for name in ETC_FILES
    ]  # fmt: skip


def _allocate(store, net: NetworkRecord, cid: str) -> str:
    """The lowest free host address of the subnet but the gateway's; recorded at once."""
    used = {net.gateway, *net.addresses.values()}
    for host in ipaddress.IPv4Network(net.subnet).hosts():
        if str(host) not in used:
            net.addresses[cid] = str(host)
            _save(store, net)
            return str(host)
    raise NetworkError(f"network {net.name} has no free address left in {net.subnet}")


def _check_ports_free(store, ports: list[publish.Publish]) -> None:
    """A port another running container publishes (named by its id), a VM publishes,
    or a host socket holds, is refused (vmm/hostnet/publish.py, ``check_ports_free``)."""
    taken = {
        (p.host_port, p.proto): e.container[:12]
        for e in _all_endpoints(store)
        if not isinstance(e, Broken) and e.ports_table is not None
        for p in e.ports
    }
    publish.check_ports_free(ports, {**publish.published_ports(), **taken})


def _all_endpoints(store) -> list[EndpointRecord | Broken]:
    with contextlib.suppress(FileNotFoundError):
        ids = sorted(os.listdir(store.endpoints))
        return [e for e in (endpoint(store, cid) for cid in ids) if e is not None]
    return []


def _make_namespace(name: str) -> None:
    """A named network namespace with lo up (pyroute2's, ``ip netns add``'s layout)."""
    from pyroute2 import NetNS

    with NetNS(name, flags=os.O_CREAT | os.O_EXCL) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def _plug(net: NetworkRecord, ep: EndpointRecord) -> None:
    """The veth pair: one end on the bridge, the other moved into the container's
    namespace and named eth0 there, with its address and the default route."""
    from pyroute2 import IPRoute, NetNS

    peer = f"pvp{ep.container[:12]}"
    prefix = ipaddress.IPv4Network(net.subnet).prefixlen
    with IPRoute() as ipr:
        ipr.link("add", ifname=ep.veth, kind="veth", peer=peer)
        host_end = ipr.link_lookup(ifname=ep.veth)[0]
        bridge = ipr.link_lookup(ifname=net.bridge)[0]
        ipr.link("set", index=host_end, master=bridge, state="up")
        fd = os.open(f"{NETNS_DIR}/{ep.netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fd)
        finally:
            os.close(fd)
    with NetNS(ep.netns) as ns:
        index = ns.link_lookup(ifname=peer)[0]
        ns.link("set", index=index, ifname="eth0")
        ns.addr("add", index=index, address=ep.address, prefixlen=prefix)
        ns.link("set", index=index, state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=net.gateway)


def disconnect(store, cid: str) -> None:
    """Undo ``connect`` for container ``cid``, whichever parts exist; caller locks."""
    ep = endpoint(store, cid)
    if ep is None:
        return
    # By the names made for ``cid``, never names read from the record; a broken record
    # may have had any of them.
    broken, names = isinstance(ep, Broken), made_names(cid)
    if broken or ep.ports_table:
        with contextlib.suppress(PyvmmError) if broken else contextlib.nullcontext():
            publish.delete_table(names["ports_table"])
    if broken or ep.veth:
        _delete_link(names["veth"])
    if broken or ep.netns:
        _remove_namespace(names["netns"])
    _release_address(store, cid)
    where = _endpoint_dir(store, cid)
    for name in (*ETC_FILES, ENDPOINT):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where / name)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(where)
    if not isinstance(ep, Broken) and ep.network is not None:
        _refresh_hosts(store, ep.network)


def _release_address(store, cid: str) -> None:
    """The address of container ``cid``, found by its id in every network: even a
    broken endpoint's."""
    for _, net in list_networks(store):
        if not isinstance(net, Broken) and net.addresses.pop(cid, None):
            _save(store, net)


def _delete_link(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def _remove_namespace(name: str) -> None:
    from pyroute2 import netns as pyroute_netns

    if os.path.exists(f"{NETNS_DIR}/{name}"):
        pyroute_netns.remove(name)


def remove_orphans(store, exists) -> None:
    """Disconnect every endpoint whose container ``exists(id)`` says is gone (a pyvmm
    killed between making the network and recording the container); caller locks."""
    with contextlib.suppress(FileNotFoundError):
        for cid in os.listdir(store.endpoints):
            with contextlib.suppress(ValueError):
                if not exists(_check_id(cid)):
                    disconnect(store, cid)


def inspect(store, name: str) -> dict:
    """The network's record for people, its containers by id with their addresses."""
    rec = get(store, name)
    data = records.to_json(rec)
    data["containers"] = data.pop("addresses")
    data["driver"] = "bridge"
    return data


def describe(store, cid: str) -> dict:
    """Container ``cid``'s endpoint for ``container inspect``: mode, network, address,
    published ports (or why its record is broken)."""
    ep = endpoint(store, cid)
    if isinstance(ep, Broken):
        return {"error": ep.reason}
    data = records.to_json(ep)
    for made in ("veth", "netns", "ports_table"):
        data.pop(made)
    return data
