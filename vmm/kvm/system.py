"""The /dev/kvm handle: API version, capabilities, supported CPUID, and new VMs."""

from __future__ import annotations

import errno
import os

from vmm.errors import PyvmmError
from vmm.kvm._kvm import ffi, lib
from vmm.kvm.ioctl import KvmError, ioctl, ioctl_val

KVM_DEVICE = "/dev/kvm"
# Enough for any current CPU's CPUID leaves; KVM answers E2BIG if it is not.
MAX_CPUID_ENTRIES = 256


class KvmUnavailable(PyvmmError):
    """/dev/kvm is missing or not usable by this user."""


class Kvm:
    """An open /dev/kvm. One per process is enough; VMs are created from it."""

    def __init__(self, path: str = KVM_DEVICE):
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KvmUnavailable(
                f"{path} does not exist: this host has no KVM (enable virtualization "
                "or load kvm_intel/kvm_amd)"
            ) from None
        except PermissionError:
            raise KvmUnavailable(
                f"no permission to open {path}: run as root or join the 'kvm' group"
            ) from None
        except OSError as e:
            raise KvmUnavailable(f"cannot open {path}: {e.strerror}") from None
        version = ioctl(self.fd, lib.KVM_GET_API_VERSION, what="KVM_GET_API_VERSION")
        if version != lib.KVM_API_VERSION:
            os.close(self.fd)
            raise KvmUnavailable(f"{path} speaks KVM API {version}, pyvmm needs 12")
        self.vcpu_mmap_size = ioctl(
            self.fd, lib.KVM_GET_VCPU_MMAP_SIZE, what="KVM_GET_VCPU_MMAP_SIZE"
        )
        self._cpuid = None

    def check_extension(self, cap: int) -> int:
        """0 when the capability is absent; otherwise a capability-specific value."""
        return ioctl_val(self.fd, lib.KVM_CHECK_EXTENSION, cap, what="KVM_CHECK_EXTENSION")

    def supported_cpuid(self):
        """The CPUID leaves KVM can virtualize on this host (a ``struct kvm_cpuid2 *``).

        Asked once and cached: every vCPU gets the same table.
        """
        if self._cpuid is None:
            cpuid = ffi.new("struct kvm_cpuid2 *", {"entries": MAX_CPUID_ENTRIES})
            cpuid.nent = MAX_CPUID_ENTRIES
            ioctl(self.fd, lib.KVM_GET_SUPPORTED_CPUID, cpuid, what="KVM_GET_SUPPORTED_CPUID")
            self._cpuid = cpuid
        return self._cpuid

    def create_vm(self):
        from vmm.kvm.vm import Vm

        try:
            fd = ioctl_val(self.fd, lib.KVM_CREATE_VM, 0, what="KVM_CREATE_VM")
        except KvmError as e:
            if e.errno == errno.EINTR:
                fd = ioctl_val(self.fd, lib.KVM_CREATE_VM, 0, what="KVM_CREATE_VM")
            else:
                raise
        return Vm(self, fd)

    def close(self) -> None:
        os.close(self.fd)
