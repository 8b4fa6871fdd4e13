#!/usr/bin/env bash
# Set up pyvmm from a clean clone on Debian 12 (as root): the Debian packages it needs,
# a virtual environment in .venv with pyvmm installed editable (which compiles the cffi
# bindings against this machine's kernel headers), and the bundled guest.
# Safe to run again: it installs only what is missing.
#
#   scripts/setup.sh          what `pyvmm boot` needs: seconds, so a newcomer boots first
#   scripts/setup.sh --all    everything: container images, gdb, the engines, the test
#                             tools, and the Linux guest, whose kernel is built here (a
#                             few minutes, once per machine; a command that needs it would
#                             otherwise build it on first use)
set -euo pipefail
cd "$(dirname "$0")/.."

# Without --all, without the packages' recommendations too (manpages, libc-devtools and
# their fonts...): a third of the download and of dpkg's time, none of it needed to boot.
# Podman's recommendations are part of what the engine tests run, so --all keeps them.
case "${1-}" in
    "") all= recommends=(--no-install-recommends) ;;
    --all) all=1 recommends=() ;;
    *) echo "usage: scripts/setup.sh [--all]" >&2; exit 2 ;;
esac

# Debian packages. For `pyvmm boot`: the compiler and headers for the cffi bindings
# (libseccomp-dev: the containers' system-call filter is one of them) and the guest.
DEBS=(gcc make binutils libc6-dev linux-libc-dev libffi-dev python3-dev python3-venv
      libseccomp-dev libseccomp2)
# For the rest: busybox-static for container images, e2fsprogs/cpio for disk images
# and the Linux guest's initramfs, gdb for `pyvmm boot --gdb`, libcap2-bin (capsh) for
# the labs; nftables for published ports (`-p`); the Linux guest's source and what
# building it takes (docs/linux.md); podman, buildah, containerd and Docker (docker.io)
# drive pyvmm-runtime in the tests, runc and crun are its yardsticks; golang-go builds
# the OCI conformance suite (below); docker-registry is the real registry pull and push
# are tested against (htpasswd from apache2-utils and openssl for its two kinds of
# authentication).
if [ -n "$all" ]; then
    DEBS+=(busybox-static cpio e2fsprogs gdb libcap2-bin nftables
           linux-source-6.1 flex bison bc libelf-dev libssl-dev xz-utils patch lz4
           podman buildah containerd docker.io runc crun libfaketime golang-go
           docker-registry apache2-utils openssl)
fi

missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        "${recommends[@]}" "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# (Re)install when something is missing, or the package metadata or the bindings'
# sources changed since the last install. The test tools only with --all.
modules="vmm.kvm._kvm, vmm.container.linux._libc, vmm.container.linux._seccomp, click, capstone, pyroute2"
package=.
if [ -n "$all" ]; then
    modules+=", pytest, xdist, hypothesis, matplotlib"
    package='.[test]'
fi
if [ ! -e .venv/.installed ] \
   || ! .venv/bin/python -c "import $modules" 2>/dev/null \
   || [ ! -x vmm/container/linux/pyvmm-exec ] || [ ! -x vmm/container/linux/pyvmm-init ] \
   || [ -n "$(find pyproject.toml setup.py scripts/pyvmm scripts/pyvmm-runtime vmm/kvm/build.py vmm/container/linux/libc_build.py vmm/container/linux/seccomp_build.py vmm/container/linux/exec_trampoline.c vmm/container/linux/reaper.c -newer .venv/.installed 2>/dev/null)" ]; then
    # "compat" editable mode is a plain path entry: the default installs an import hook
    # that costs every pyvmm start some 20 ms.
    .venv/bin/pip install -q --disable-pip-version-check -e "$package" \
        --config-settings editable_mode=compat
    touch .venv/.installed
fi
# Bytecode ahead of time: with PYTHONDONTWRITEBYTECODE set, Python would otherwise
# compile every pyvmm module again on every start.
.venv/bin/python -m compileall -q vmm
make -s -C guest
# The Linux guest: the kernel into a cache outside the repository (a few minutes the
# first time on a machine, then found by a hash of its configuration and patches), the
# initramfs into guest/build. Its progress goes to stderr. Then the OCI conformance
# suite (runtime-tools, from ../shared/conformance/) into a cache outside the repository,
# keyed by the tarball's hash: a minute or two, once a machine. Without the tarball (a
# clone outside the project's workplace) it says so, and its tests skip.
if [ -n "$all" ]; then
    .venv/bin/python scripts/build_linux.py >/dev/null
    .venv/bin/python scripts/conformance.py --build >/dev/null
fi
