"""Published ports: a host port forwarded to a port of a VM's guest, by nftables DNAT.

``pyvmm boot --net ... -p 8080:80`` makes connections to port 8080 of any of the host's
own addresses (from other machines: the prerouting hook; from the host itself: the
output hook) go to port 80 of the guest, as Docker's ``-p`` does for a container. The
guest's address is the one the kernel command line's ``ip=`` gives it
(docs/networking.md). Not published: 127.0.0.1, which the kernel will not route to
another host without ``route_localnet`` (Docker answers it with a userland proxy).

The rules live in a table of their own, ``ip pyvmm-vm-NS-PID-START``, made in one
transaction through nft's JSON interface (``nft -j -f -``: Debian's nftables,
libnftables' JSON schema, libnftables-json(5)) and deleted when the VM ends. A pyvmm
killed with SIGKILL leaves its table behind; its name says which process made it (its
PID namespace, its pid and its start time, vmm/proc.py), so the next ``pyvmm
boot -p`` removes the tables of processes that are gone, as Docker cleans up after
itself when it starts again. Only those of its own PID namespace: a pid means nothing
in another.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass

from vmm.errors import PyvmmError

NFT = "nft"
# prerouting and output at NF_IP_PRI_NAT_DST (-100, "dstnat"), where DNAT belongs;
# postrouting at NF_IP_PRI_NAT_SRC (100, "srcnat"), where masquerade belongs.
NAT_PRIORITY = -100
SNAT_PRIORITY = 100
_VM_TABLE = re.compile(r"^pyvmm-vm-(\d+)-(\d+)-(\d+)$")  # PID namespace, pid, start time
_PUBLISH = re.compile(
    r"^(?:(?P<ip>[0-9.]+):)?(?P<host>\d+):(?P<guest>\d+)(?:/(?P<proto>tcp|udp))?$"
)


@dataclass(frozen=True)
class Publish:
    """``-p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]``, parsed."""

    host_port: int
    guest_port: int
    proto: str = "tcp"
    host_ip: str | None = None  # None: every address of the host's


def parse_publish(text: str) -> Publish:
    found = _PUBLISH.match(text)
    if not found:
        raise PyvmmError(f"-p {text!r}: use [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]")
    host, guest = int(found["host"]), int(found["guest"])
    if not (0 < host < 65536 and 0 < guest < 65536):
        raise PyvmmError(f"-p {text!r}: ports are 1-65535")
    ip = found["ip"]
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise PyvmmError(f"-p {text!r}: {ip} is not an IPv4 address") from None
    return Publish(host, guest, found["proto"] or "tcp", ip)


def guest_address(cmdline: str) -> str:
    """The guest's address from the kernel's ``ip=CLIENT:...`` on the command line."""
    for word in cmdline.split():
        if word.startswith("ip="):
            client = word[3:].split(":")[0]
            try:
                return str(ipaddress.IPv4Address(client))
            except ValueError:
                break
    raise PyvmmError("-p needs the guest's address: give it with ip=ADDR::GW:MASK::eth0:off "
                     "in --cmdline (docs/networking.md)")  # fmt: skip


def _rule(table: str, chain: str, guest: str, port: Publish) -> dict:
    expr: list[dict] = [
        {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                   "right": "local"}},
    ]  # fmt: skip
    if port.host_ip is not None:
        expr.append({"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                     "field": "daddr"}}, "right": port.host_ip}})  # fmt: skip
    expr += [
        {"match": {"op": "==", "left": {"payload": {"protocol": port.proto, "field": "dport"}},
                   "right": port.host_port}},
        {"dnat": {"addr": guest, "port": port.guest_port}},
    ]  # fmt: skip
    return {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}


def nft(document: dict) -> None:
    proc = subprocess.run(
        [NFT, "-j", "-f", "-"], input=json.dumps(document), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise PyvmmError(f"nft: {proc.stderr.strip().splitlines()[-1] if proc.stderr else '?'}")


class PortTable:
    """The nft table of one guest's or container's published ports; ``close`` removes
    it. ``name`` defaults to the VM's, ``pyvmm-vm-NS-PID-START`` (the module says why).

    With ``bridge`` (a container's, whose network pyvmm made), connections to
    127.0.0.1 are published too, as Docker does without its userland proxy: the output
    hook's DNAT sends them on with source 127.0.0.1, which the kernel routes out of
    ``bridge`` only with its ``route_localnet`` on (``container/network.py`` sets it)
    and which the postrouting hook here masquerades as the bridge's own address, so
    that the reply comes back. The same rule covers hairpin: a container reaching its
    own published port through the host's address gets the host's address as source.
    """

    def __init__(
        self, guest: str, ports: list[Publish], name: str | None = None, bridge: str | None = None
    ) -> None:
        if shutil.which(NFT) is None:
            raise PyvmmError("-p needs nft: apt-get install nftables")
        if name is None:
            remove_stale_vm_tables()
            check_ports_free(ports, published_ports())
            name = _vm_table_name()
        self.name = name
        commands: list[dict] = [{"add": {"table": {"family": "ip", "name": self.name}}}]
        for hook in ("prerouting", "output"):
            commands.append(chain(self.name, hook, NAT_PRIORITY))
            commands += [{"add": _rule(self.name, hook, guest, p)} for p in ports]
        if bridge is not None:
            commands.append(chain(self.name, "postrouting", SNAT_PRIORITY))
            for source in ({"prefix": {"addr": "127.0.0.0", "len": 8}}, guest):
                commands.append({"add": {"rule": {
                    "family": "ip", "table": self.name, "chain": "postrouting", "expr": [
                        match({"meta": {"key": "oifname"}}, bridge),
                        match({"payload": {"protocol": "ip", "field": "saddr"}}, source),
                        match({"payload": {"protocol": "ip", "field": "daddr"}}, guest),
                        match({"ct": {"key": "status"}}, "dnat", "in"),
                        {"masquerade": None},
                    ]}}})  # fmt: skip
        nft({"nftables": commands})

    def close(self) -> None:
        delete_table(self.name)


def published_ports() -> dict[tuple[int, str], str]:
    """(host port, protocol) -> the pyvmm table (a VM's or a container's) whose DNAT
    rules publish it in this network namespace, read from nft's own ruleset."""
    listed = subprocess.run([NFT, "-j", "list", "ruleset", "ip"], capture_output=True, text=True)
    if listed.returncode != 0:
        return {}
    taken = {}
    for item in json.loads(listed.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or not str(rule.get("table", "")).startswith("pyvmm-"):
            continue
        for expr in rule.get("expr", []):
            found = expr.get("match") or {}
            left, right = found.get("left"), found.get("right")
            payload = left.get("payload", {}) if isinstance(left, dict) else {}
            if payload.get("field") == "dport" and isinstance(right, int):
                taken[(right, payload.get("protocol"))] = rule["table"]
    return taken


def check_ports_free(ports: list[Publish], taken: dict[tuple[int, str], str]) -> None:
    """Refuse, in one line, a port that ``taken`` (published_ports) lists or that a host
    socket holds: Docker's "port is already allocated", and its userland proxy's failing
    bind, found here by binding it for a moment."""
    for p in ports:
        if (p.host_port, p.proto) in taken:
            who = taken[(p.host_port, p.proto)]
            raise PyvmmError(f"port {p.host_port}/{p.proto} is already published by {who}")
        kind = socket.SOCK_STREAM if p.proto == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            # A listener holds the port, a connection's TIME_WAIT does not (the proxy's
            # own socket would set SO_REUSEADDR too).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip or "0.0.0.0", p.host_port))
            except OSError as e:
                why = "is in use on the host" if e.errno == errno.EADDRINUSE else e.strerror
                raise PyvmmError(f"port {p.host_port}/{p.proto} {why}") from None


def _pid_namespace() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def _vm_table_name() -> str:
    from vmm.proc import process_start

    pid = os.getpid()
    return f"pyvmm-vm-{_pid_namespace()}-{pid}-{process_start(pid)}"


def remove_stale_vm_tables() -> list[str]:
    """Delete the port tables of ``pyvmm boot`` processes of this PID namespace that are
    gone (killed: a pyvmm that ends removes its own); returns their names."""
    from vmm.proc import is_alive

    listed = subprocess.run([NFT, "-j", "list", "tables", "ip"], capture_output=True, text=True)
    if listed.returncode != 0:
        return []
    names = [item["table"]["name"] for item in json.loads(listed.stdout).get("nftables", [])
             if "table" in item]  # fmt: skip
    stale = []
    for name in names:
        found = _VM_TABLE.match(name)
        ns, pid, start = (int(n) for n in found.groups()) if found else (None, None, None)
        if ns == _pid_namespace() and not is_alive(pid, start):
            delete_table(name)
            stale.append(name)
    return stale


def chain(table: str, hook: str, priority: int) -> dict:
    return {"add": {"chain": {
        "family": "ip", "table": table, "name": hook, "type": "nat", "hook": hook,
        "prio": priority, "policy": "accept",
    }}}  # fmt: skip


def match(left: dict, right: object, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def delete_table(name: str) -> None:
    """Delete nft table ``ip NAME``; one that is not there is no error (added first in
    the same transaction: nft 1.0.6 has no ``destroy``)."""
    table = {"table": {"family": "ip", "name": name}}
    nft({"nftables": [{"add": table}, {"delete": table}]})
