"""The container runtime: the same workload as the VM, run as a namespaced process.

Three layers, as Docker → containerd → runc (docs/ARCHITECTURE.md), each a folder, with
the Linux pieces under them; imports point down only (tests/test_import_direction.py):

- ``engine/``: the Docker-like front (``pyvmm container``, its command line is
  ``vmm/cli/container.py``): the lifecycle and its monitor, a client of the OCI core as
  containerd is of runc; the container's record, bundles, volumes, networks, Docker's
  hardening options. Over ``oci/`` and ``image/``.
- ``oci/``: the OCI core, runc's library: ``config.json`` checked (``spec.py``), the
  lifecycle and its state (``runtime.py``), the init from fork to execve, hooks. Its
  command line is ``pyvmm-runtime`` (``vmm/cli/runtime.py``).
- ``image/``: images into and out of the store: records, import (directory, tar, OCI
  layout, docker save), a registry's pull and push, the image spec's documents,
  untrusted layer tars read and unpacked.
- ``store/``: the state directory and its lock, the typed records on disk, names, the
  content-addressed layer store.
- ``linux/``: namespaces, mounts and pivot_root, cgroups v1 and v2, capabilities,
  rlimits, seccomp, the libc calls Python lacks, fd-based tree walks, paths resolved
  inside a rootfs, the sealed exec trampoline.

engine -> oci -> linux, and engine -> image -> store -> linux.
"""

# The runtime-spec version: what `spec` writes, what `state`, `features` and `--version`
# report. Here, so that `pyvmm-runtime --version` reads it without importing the spec.
OCI_VERSION = "1.1.0"
