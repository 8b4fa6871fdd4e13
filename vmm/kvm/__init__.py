"""KVM bindings: the only package that calls ioctl.

``Kvm`` is /dev/kvm, ``Vm`` a virtual machine, ``Vcpu`` a virtual CPU whose ``run()``
returns one of the exit classes below. Struct layouts and ioctl numbers come from the
system's <linux/kvm.h> through the cffi module built by ``build.py``.
"""

from vmm.kvm.ioctl import KvmError
from vmm.kvm.system import Kvm, KvmUnavailable
from vmm.kvm.vcpu import (
    DebugExit,
    FailEntryExit,
    HltExit,
    InternalErrorExit,
    InterruptedExit,
    IoExit,
    MmioExit,
    ShutdownExit,
    SystemEventExit,
    UnknownExit,
    Vcpu,
    internal_error_name,
)
from vmm.kvm.vm import Vm

__all__ = [
    "DebugExit",
    "FailEntryExit",
    "HltExit",
    "InternalErrorExit",
    "InterruptedExit",
    "IoExit",
    "Kvm",
    "KvmError",
    "KvmUnavailable",
    "MmioExit",
    "ShutdownExit",
    "SystemEventExit",
    "UnknownExit",
    "Vcpu",
    "Vm",
    "internal_error_name",
]
