"""A TAP interface: the host end of a VM's network card.

A TAP is a network interface whose "wire" is a file descriptor: a frame the host sends
out of the interface is read from the fd, a frame written to the fd arrives on the
interface (Documentation/networking/tuntap.rst). pyvmm opens one per ``--net``:

* ``tap=NAME``: an existing TAP (made with ``ip tuntap add NAME mode tap``) is attached
  to as it is, and left behind; a name that does not exist is created, brought up, and
  removed again when pyvmm closes it (a TAP that is not persistent lives as long as its
  fd, so it goes even when pyvmm is killed).
* ``bridge=NAME``: a new TAP (``pyvmm%d``, the kernel picks the number) is enslaved to
  that existing bridge and brought up, as QEMU's bridge helper and Docker's veth do.

Netlink (a link's state, its master) goes through pyroute2, imported only here so a boot
without a network does not pay for it; the TAP itself is three ioctls on /dev/net/tun.
The fd carries a ``virtio_net_hdr_v1`` in front of every frame (IFF_VNET_HDR with
TUNSETVNETHDRSZ 12), the same header the guest's driver uses, so the device passes
frames through untouched (vmm/devices/virtio/net.py).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from vmm.errors import PyvmmError

TUN_DEVICE = "/dev/net/tun"
# ioctls and flags from include/uapi/linux/if_tun.h (_IOW('T', n, int) and friends).
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int): attach the fd to (or create) an interface
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int): offloads the reader takes
TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int): size of the vnet header per frame
IFF_TAP = 0x0002  # Ethernet frames (IFF_TUN would be IP packets)
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix
IFF_VNET_HDR = 0x4000  # a struct virtio_net_hdr in front of every frame
TUN_F_CSUM = 0x01  # the reader takes frames with a partial checksum
TUN_F_TSO4 = 0x02  # ... TCPv4 segmentation left to it
TUN_F_TSO6 = 0x04  # ... TCPv6
IFNAMSIZ = 16  # include/uapi/linux/if.h, with the NUL
_IFREQ = struct.Struct("16sH22x")  # struct ifreq: ifr_name, ifr_flags, union padding
VNET_HDR_SIZE = 12  # struct virtio_net_hdr_v1 (virtio 1.2, 5.1.6)
BRIDGE_TAP_NAME = "pyvmm%d"


class TapError(PyvmmError):
    """A TAP or bridge that cannot be used; the message names it and says why."""


def check_name(name: str, what: str) -> str:
    """An interface name the kernel would take (dev_valid_name): 1-15 bytes, no '/',
    ':' or white space, not '.' or '..'."""
    raw = name.encode(errors="replace")
    if not 0 < len(raw) < IFNAMSIZ or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise TapError(
            f"--net {what}={name}: not an interface name (1-15 bytes, no '/', ':' or spaces)"
        )
    return name


def _exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


class Tap:
    """One TAP fd, non-blocking, vnet header on. ``created``: pyvmm made the interface,
    and it goes with the fd."""

    def __init__(self, fd: int, name: str, created: bool) -> None:
        self.fd = fd
        self.name = name
        self.created = created

    @classmethod
    def open(cls, tap: str | None = None, bridge: str | None = None) -> Tap:
        """Attach to or create ``tap``, or create a TAP on ``bridge``; see the module."""
        if bridge is not None:
            _check_bridge(check_name(bridge, "bridge"))
            name, created = BRIDGE_TAP_NAME, True
        else:
            name = check_name(tap or "", "tap")
            created = not _exists(name)
        if not os.path.exists(TUN_DEVICE):
            raise TapError(f"{TUN_DEVICE} is missing: the host has no TUN/TAP driver")
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            request = _IFREQ.pack(name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
            try:
                name = _IFREQ.unpack(fcntl.ioctl(fd, TUNSETIFF, request))[0]
            except OSError as e:
                raise TapError(_attach_error(name, created, e)) from None
            name = name.rstrip(b"\0").decode()
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_SIZE))
            if created:
                _bring_up(name, bridge)
        except BaseException:
            os.close(fd)  # a TAP pyvmm created goes with its fd
            raise
        return cls(fd, name, created)

    def set_offload(self, csum: bool, tso4: bool, tso6: bool) -> None:
        """Which offloaded frames the reader (the guest's driver) takes: the host kernel
        checksums and segments the rest itself before they reach the fd."""
        flags = (TUN_F_CSUM if csum else 0) | (TUN_F_TSO4 if csum and tso4 else 0)
        flags |= TUN_F_TSO6 if csum and tso6 else 0
        fcntl.ioctl(self.fd, TUNSETOFFLOAD, flags)

    def close(self) -> None:
        os.close(self.fd)


def _attach_error(name: str, created: bool, e: OSError) -> str:
    if e.errno == errno.EPERM:
        return f"--net: creating or attaching TAP {name} needs CAP_NET_ADMIN: {e.strerror}"
    if e.errno == errno.EBUSY:
        return f"--net tap={name}: the TAP is in use by another process"
    if e.errno == errno.EINVAL and not created:
        return f"--net tap={name}: {name} exists and is not a TAP"
    return f"--net: TAP {name}: {e.strerror}"


def _check_bridge(bridge: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=bridge)
        kind = found and ipr.get_links(found[0])[0].get(("linkinfo", "kind"))
    if kind != "bridge":
        what = "is not a bridge" if found else "does not exist"
        raise TapError(f"--net bridge={bridge}: {bridge} {what}")


def _bring_up(name: str, bridge: str | None) -> None:
    """Set the new TAP up, enslaved to ``bridge`` if given, over netlink."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=name)[0]
        if bridge is None:
            ipr.link("set", index=index, state="up")
        else:
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("set", index=index, master=master, state="up")
