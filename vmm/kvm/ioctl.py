"""The one place pyvmm calls ioctl(2): a checked call that turns errno into KvmError."""

from __future__ import annotations

import os

from vmm.errors import PyvmmError
from vmm.kvm._kvm import ffi, lib


class KvmError(PyvmmError):
    """An ioctl on /dev/kvm, a VM or a vCPU failed; the message names the ioctl."""

    def __init__(self, what: str, err: int):
        super().__init__(f"{what} failed: {os.strerror(err)}")
        self.errno = err


def ioctl(fd: int, request: int, arg=ffi.NULL, what: str = "ioctl") -> int:
    """ioctl with a pointer argument (a cffi struct) or none."""
    rc = lib.kvm_ioctl(fd, request, arg)
    if rc < 0:
        raise KvmError(what, ffi.errno)
    return rc


def ioctl_val(fd: int, request: int, value: int, what: str = "ioctl") -> int:
    """ioctl whose argument is a plain integer (KVM_CREATE_VCPU, KVM_CHECK_EXTENSION...)."""
    rc = lib.kvm_ioctl_val(fd, request, value)
    if rc < 0:
        raise KvmError(what, ffi.errno)
    return rc
