"""Only here because cffi compiles its extension modules through setuptools' ``cffi_modules``,
because ``build_ext`` also compiles ``vmm/container/linux/pyvmm-exec`` (exeseal.py) and
``pyvmm-init`` (``run --init``'s PID 1, reaper.c), and for the two commands' scripts.

Everything else about the package lives in pyproject.toml.
"""

import os
import subprocess
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Static, no libc, a few hundred bytes: the flags guest/workload/Makefile uses.
TRAMPOLINE_FLAGS = [
    "-O2", "-std=gnu11", "-Wall", "-Wextra", "-ffreestanding", "-fno-pie",
    "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fcf-protection=none",
    "-mgeneral-regs-only", "-fno-ident", "-static", "-nostdlib", "-no-pie", "-s",
    "-Wl,--build-id=none", "-Wl,-z,noseparate-code", "-Wl,-z,noexecstack",
]  # fmt: skip


class BuildExtAndTrampoline(build_ext):
    """The cffi modules, then the container runtime's exec trampoline and --init's PID 1."""

    def run(self):
        super().run()
        out = (
            "vmm/container/linux"
            if self.inplace
            else os.path.join(self.build_lib, "vmm/container/linux")
        )
        os.makedirs(out, exist_ok=True)
        cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
        subprocess.run([cc, *TRAMPOLINE_FLAGS, "-o", os.path.join(out, "pyvmm-exec"),
                        "vmm/container/linux/exec_trampoline.c"], check=True)  # fmt: skip
        # --init's PID 1: static (it runs in any image), with libc for execvp and signals.
        subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-static", "-s", "-o",
                        os.path.join(out, "pyvmm-init"), "vmm/container/linux/reaper.c"],
                       check=True)  # fmt: skip


setup(
    cffi_modules=[
        "vmm/kvm/build.py:ffibuilder",
        "vmm/container/linux/libc_build.py:ffibuilder",
        "vmm/container/linux/seccomp_build.py:ffibuilder",
    ],
    cmdclass={"build_ext": BuildExtAndTrampoline},
    # The commands, as plain scripts rather than [project.scripts] entry points (whose
    # generated wrappers import re): scripts/pyvmm says why.
    scripts=["scripts/pyvmm", "scripts/pyvmm-runtime"],
)
