"""The container runtime: the same workload as the VM, run as a namespaced process.

Three layers, as Docker → containerd → runc (docs/ARCHITECTURE.md), and the Linux
pieces under them. Code map (docs/containers.md walks through it as a lab):

- ``cli.py``: ``pyvmm container|image|volume``; parses and prints, nothing more.
- ``container.py``: the image-side lifecycle (create, start, run, stop, kill, rm,
  logs, diff, reconcile) and the monitor, a client of the OCI core (as containerd is
  of runc); ``bundle.py``: image store → OCI bundle.
- ``runtime_cli.py``: ``pyvmm-runtime``, runc's command line.
- The OCI core: ``spec.py`` (config.json, checked), ``runtime.py`` (create, start,
  kill, delete, exec, pause, update; the state), ``init.py`` (the init from fork to
  execve), ``hooks.py``.
- ``namespaces.py``: unshare, the PID namespace for children, hostname, loopback.
- ``mounts.py``: overlay, mount options and propagation, /dev, masked paths, pivot_root.
- ``capabilities.py``: the capability sets and no_new_privs.
- ``cgroups.py``: one interface, ``CgroupV1`` and ``CgroupV2``.
- ``images.py``: image records; ``importer.py``: directory, tar, OCI layout, docker save.
- ``imagespec.py``: the OCI image documents, type-checked; ``layout.py``: the files of
  an import source and of the image layout in it, read verified.
- ``layers.py``: the layer store and whiteouts; ``unpack.py``: untrusted tar unpacking.
- ``fdtree.py``: walks, by directory fd and never following symlinks, of the trees
  images and containers control (remove, size, diff, unpacking).
- ``volumes.py``: named volumes and bind mounts.
- ``state.py``: the state directory, its lock and the container record;
  ``records.py``: the store's records, read through ``vmm/record.py``; ``names.py``: names.
- ``libc_build.py`` (cffi, compiled at install) and ``libc.py``: the libc calls.
- ``bench.py``: start-up measurements for ``scripts/bench_container.py``.
"""

# The runtime-spec version: what `spec` writes, what `state`, `features` and `--version`
# report. Here, so that `pyvmm-runtime --version` reads it without importing the spec.
OCI_VERSION = "1.1.0"
