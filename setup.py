"""Only here because cffi compiles its extension modules through setuptools' ``cffi_modules``.

Everything else about the package lives in pyproject.toml.
"""

from setuptools import setup

setup(
    cffi_modules=[
        "vmm/kvm/build.py:ffibuilder",
        "vmm/container/libc_build.py:ffibuilder",
        "vmm/container/seccomp_build.py:ffibuilder",
    ],
)
