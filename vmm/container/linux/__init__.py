"""The Linux pieces a container is made of: namespaces, mounts and
pivot_root, cgroups (v1 and v2), capabilities, rlimits, seccomp, the libc calls Python
lacks, fd-based tree walks, paths resolved inside a rootfs, the sealed exec trampoline.
They know nothing of OCI bundles or images.
"""
