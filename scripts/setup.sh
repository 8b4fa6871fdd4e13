#!/usr/bin/env bash
# Set up pyvmm from a clean clone on Debian 12 (as root): the Debian packages it needs,
# a virtual environment in .venv with pyvmm installed editable (which compiles the cffi
# bindings against this machine's kernel headers), and the bundled guest.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the compiler and headers for the cffi bindings and the guest,
# busybox-static for container images, e2fsprogs/cpio for disk images, gdb for the
# debugger tests (pyvmm boot --gdb), libseccomp for the containers' system-call filter,
# libcap2-bin (capsh) for the labs; the Linux guest's source and what building it takes
# (docs/linux.md); podman and containerd drive pyvmm-runtime in the tests, runc and crun
# are its yardsticks.
DEBS=(gcc make binutils libc6-dev linux-libc-dev libffi-dev python3-dev python3-venv
      busybox-static cpio e2fsprogs gdb libcap2-bin libseccomp-dev libseccomp2
      linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils patch lz4
      podman containerd runc crun)

missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# (Re)install when something is missing, or the package metadata or the bindings'
# sources changed since the last install.
if [ ! -e .venv/.installed ] \
   || ! .venv/bin/python -c "import vmm.kvm._kvm, vmm.container._libc, vmm.container._seccomp, click, capstone, pyroute2, pytest, hypothesis, matplotlib" 2>/dev/null \
   || [ -n "$(find pyproject.toml setup.py vmm/kvm/build.py vmm/container/libc_build.py vmm/container/seccomp_build.py -newer .venv/.installed 2>/dev/null)" ]; then
    # "compat" editable mode is a plain path entry: the default installs an import hook
    # that costs every pyvmm start some 20 ms.
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
        --config-settings editable_mode=compat
    touch .venv/.installed
fi
# Bytecode ahead of time: with PYTHONDONTWRITEBYTECODE set, Python would otherwise
# compile every pyvmm module again on every start.
.venv/bin/python -m compileall -q vmm
make -s -C guest
# The Linux guest: the kernel into a cache outside the repository (a few minutes the
# first time on a machine, then found by a hash of its configuration and patches), the
# initramfs into guest/build.
.venv/bin/python scripts/build_linux.py >/dev/null
