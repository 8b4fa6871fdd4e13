"""The container runtime: the same workload as the VM, run as a namespaced process.

Code map (docs/containers.md walks through it as a lab):

- ``cli.py``: ``pyvmm container|image|volume``; parses and prints, nothing more.
- ``container.py``: the lifecycle (create, start, run, stop, kill, rm, logs, diff,
  reconcile) and the container's PID 1 from fork to exec.
- ``namespaces.py``: unshare, the PID namespace for children, hostname, loopback.
- ``mounts.py``: overlay root, /proc, /dev, /sys, masked paths, pivot_root.
- ``capabilities.py``: the capability sets and no_new_privs.
- ``cgroups.py``: one interface, ``CgroupV1`` and ``CgroupV2``.
- ``images.py``: image records; ``importer.py``: directory, tar, OCI layout, docker save.
- ``imagespec.py``: the OCI image documents, type-checked; ``layout.py``: the files of
  an import source and of the image layout in it, read verified.
- ``layers.py``: the layer store and whiteouts; ``unpack.py``: untrusted tar unpacking.
- ``fdtree.py``: walks, by directory fd and never following symlinks, of the trees
  images and containers control (remove, size, diff, unpacking).
- ``volumes.py``: named volumes and bind mounts.
- ``state.py``: the state directory, its lock and JSON records; ``names.py``: names.
- ``libc_build.py`` (cffi, compiled at install) and ``libc.py``: the libc calls.
- ``bench.py``: start-up measurements for ``scripts/bench_container.py``.
"""
