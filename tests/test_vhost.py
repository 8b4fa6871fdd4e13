"""vhost-net (vmm/devices/virtio/vhost.py): its ioctl numbers and layouts are the kernel
headers', and a host without /dev/vhost-net (this one: its kernel has no vhost_net)
refuses ``vhost=on`` in one line and leaves nothing behind. The guest on vhost is
tests/test_linux_net.py's, where the host has the device."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from nettest import links, needs_netns
from vmtest import assert_one_line_error, needs_kvm

from vmm.devices.virtio import vhost
from vmm.hostnet import netns

HEADER = "/usr/include/linux/vhost.h"
NAMES = ["VHOST_GET_FEATURES", "VHOST_SET_FEATURES", "VHOST_SET_OWNER", "VHOST_SET_MEM_TABLE",
         "VHOST_SET_VRING_NUM", "VHOST_SET_VRING_ADDR", "VHOST_SET_VRING_BASE",
         "VHOST_SET_VRING_KICK", "VHOST_SET_VRING_CALL", "VHOST_NET_SET_BACKEND"]  # fmt: skip
SIZES = {
    "struct vhost_vring_state": vhost._VRING_STATE.size,
    "struct vhost_vring_file": vhost._VRING_FILE.size,
    "struct vhost_vring_addr": vhost._VRING_ADDR.size,
    "struct vhost_memory": vhost._MEMORY.size,
    "struct vhost_memory_region": vhost._MEMORY_REGION.size,
}


@pytest.mark.skipif(
    not (os.path.exists(HEADER) and shutil.which("gcc")), reason="needs gcc and linux/vhost.h"
)
def test_ioctl_numbers_and_layouts_are_the_headers(tmp_path):
    lines = [f'printf("{n} %lu\\n", (unsigned long){n});' for n in NAMES]
    lines += [f'printf("{t} %zu\\n", sizeof({t}));' for t in SIZES]
    source = tmp_path / "vhost.c"
    source.write_text(
        "#include <stdio.h>\n#include <linux/vhost.h>\nint main(void) {\n"
        + "\n".join(lines)
        + "\nreturn 0;\n}\n"
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "vhost"), str(source)], check=True)
    out = subprocess.run([str(tmp_path / "vhost")], capture_output=True, text=True, check=True)
    said = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines())
    assert {n: int(said[n]) for n in NAMES} == {n: getattr(vhost, n) for n in NAMES}
    assert {t: int(said[t]) for t in SIZES} == SIZES


@needs_kvm
@needs_netns
@pytest.mark.skipif(os.path.exists(vhost.VHOST_NET_DEVICE), reason="this host has vhost-net")
def test_vhost_on_without_the_device_is_one_line_exit_2_and_leaves_no_tap():
    with netns.scratch() as ns:
        proc = subprocess.run(
            netns.command(ns, [sys.executable, "-m", "vmm", "boot", "--net", "tap=vh0,vhost=on"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert_one_line_error(proc, "vhost=on", vhost.VHOST_NET_DEVICE)
        assert "vh0" not in links(ns)  # the TAP pyvmm made went with its fd
