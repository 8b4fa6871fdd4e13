"""``pyvmm container inspect`` names the capabilities a container keeps, and they are the
ones the kernel shows in the container's bounding set."""

from __future__ import annotations

from vmm.container.linux import capabilities


def test_inspect_names_the_bounding_set_the_kernel_shows(pyvmm):
    out = pyvmm.ok(
        "container", "run", "--name", "caps", "busybox", "grep", "CapBnd", "/proc/self/status"
    )
    mask = int(out.split()[1], 16)
    named = pyvmm.inspect("caps")["security"]["capabilities"]
    assert sorted(named) == sorted(capabilities.decode(mask))
    assert "CAP_CHOWN" in named and "CAP_SYS_ADMIN" not in named and "CAP_MKNOD" not in named
