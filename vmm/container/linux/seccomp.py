"""seccomp: which system calls the container may make at all.

Capabilities decide what root may do; a seccomp filter decides which system calls
reach the kernel at all, so that a code path a capability check does not guard (or
guards badly: user namespaces give a process every capability over objects it owns)
is not there to attack. Docker's default profile is an allow-list of some 370
calls; anything else fails with EPERM, and the calls that need a capability the
container lacks (``mount``, ``unshare``, ``setns``, ``bpf``, ``ptrace`` before 4.8,
``clone`` with any namespace flag...) are allowed only when it has it.

Two formats, two steps, as in Docker and runc:

1. ``to_oci``: a *Docker profile* (``--security-opt seccomp=PROFILE.json``: rules may
   be conditional on capabilities, architecture and kernel version) becomes the OCI
   runtime spec's ``linux.seccomp`` object for one container on this host (moby's
   profiles/seccomp package does this).
2. ``build``: the OCI object becomes a BPF program through libseccomp, which knows
   every architecture's system-call numbers (runc's libcontainer/seccomp does this);
   ``Program.load`` loads it into the calling process, the last step before execve.

The filter is inherited by every child and can never be removed. Loading one needs
no_new_privs or CAP_SYS_ADMIN (so that a setuid program cannot be run with calls its
author expected to work failing); the caller arranges that.
Runtime spec: config-linux.md "Seccomp".
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vmm.errors import PyvmmError

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")

# OCI action names (config-linux.md "Seccomp"); SCMP_ACT_NOTIFY needs a listener
# process that pyvmm does not have, so it is refused like an unknown action.
ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
)
OPERATORS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
# seccomp(2) filter flags the spec names (and supports here), by the kernel's names.
FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
)
# uname's machine: (the architecture name Docker profiles' "arches" use, the OCI one).
MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}
MAX_ARGS = 6  # a system call has at most six arguments (seccomp_data.args)


class SeccompError(PyvmmError):
    """A seccomp profile that cannot be read, converted or loaded."""


def _fail(where: str, message: str) -> SeccompError:
    return SeccompError(f"seccomp profile {where}: {message}")


def read_profile(path: str) -> dict:
    """The Docker profile in file ``path``, checked to be a JSON object.

    Opened without blocking (a FIFO would hang a plain open) and read with a bound:
    Docker's own profile is 14 KiB, so 4 MiB is plenty.
    """
    limit = 1 << 22
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _fail(path, "not a regular file")
            text = os.read(fd, limit + 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None
    if len(text) > limit:
        raise _fail(path, "larger than 4 MiB")
    try:
        profile = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _fail(path, f"not valid JSON: {e}") from None
    if not isinstance(profile, dict):
        raise _fail(path, "not a JSON object")
    return profile


def default_profile() -> dict:
    """Docker's default profile (seccomp_default.json, taken unchanged from moby)."""
    return json.loads(DEFAULT_PROFILE.read_bytes())


def _kernel_at_least(wanted: object, release: str, where: str) -> bool:
    """Whether kernel ``release`` is at least ``wanted`` ("5.8"); as in moby, only the
    first two numbers count."""
    try:
        major, minor = (int(x) for x in str(wanted).split("."))
    except ValueError:
        raise _fail(where, f'bad minKernel {wanted!r}: expected "<kernel>.<major>"') from None
    have = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    return have >= (major, minor)


def _strings(value: object, what: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"{what} must be a list of strings")
    return value


def _applies(rule: dict, arch: str, caps: set[str], release: str, where: str) -> bool:
    """moby's conditions: every ``includes`` must hold, no ``excludes`` may."""
    for key, want in (("includes", True), ("excludes", False)):
        cond = rule.get(key) or {}
        if not isinstance(cond, dict):
            raise _fail(where, f"{key} must be an object")
        arches = _strings(cond.get("arches"), f"{key}.arches", where)
        needed = _strings(cond.get("caps"), f"{key}.caps", where)
        kernel = cond.get("minKernel")
        if want:
            if arches and arch not in arches:
                return False
            if not all(c in caps for c in needed):
                return False
            if kernel and not _kernel_at_least(kernel, release, where):
                return False
        else:
            if arches and arch in arches:
                return False
            if any(c in caps for c in needed):
                return False
            if kernel and _kernel_at_least(kernel, release, where):
                return False
    return True


def to_oci(profile: dict, bounding: Iterable[str], where: str = "",
           machine: str | None = None, release: str | None = None) -> dict | None:  # fmt: skip
    """The OCI ``linux.seccomp`` object for a container whose bounding capability set is
    ``bounding`` (names such as "CAP_SYS_ADMIN"), on this host's architecture and kernel
    (or ``machine``/``release``); None for a profile that filters nothing.

    ``where`` names the profile in errors. The result is checked with ``validate``.
    """
    where = where or "(default)"
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None  # moby: no default action and no rules means no filter
    if profile.get("architectures") and profile.get("archMap"):
        raise _fail(where, "both architectures and archMap given: use one")
    machine = machine or os.uname().machine
    release = release or os.uname().release
    arch, oci_arch = MACHINES.get(machine, (machine, ""))
    caps = set(bounding)
    oci = {
        k: profile[k]
        for k in ("defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath")
        if k in profile
    }
    archmap = profile.get("archMap") or []
    if not isinstance(archmap, list) or not all(isinstance(a, dict) for a in archmap):
        raise _fail(where, "archMap must be a list of objects")
    for entry in archmap:
        if entry.get("architecture") == oci_arch:
            subs = _strings(entry.get("subArchitectures"), "subArchitectures", where)
            oci["architectures"] = [oci_arch, *subs]
            break
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise _fail(where, "syscalls must be a list of objects")
    oci["syscalls"] = []
    for rule in rules:
        if rule.get("name") and rule.get("names"):
            raise _fail(where, "a rule has both name and names: use one")
        if not _applies(rule, arch, caps, release, where):
            continue
        names = [rule["name"]] if rule.get("name") else rule.get("names")
        call = {k: rule[k] for k in ("action", "errnoRet", "args") if k in rule}
        oci["syscalls"].append({"names": names, **call})
    validate(oci, where)
    return oci


def _errno_ret(value: object, what: str, where: str) -> None:
    if value is not None and (not isinstance(value, int) or not 0 <= value <= 0xFFFF):
        raise _fail(where, f"{what} must be a number from 0 to 65535")


def validate(oci: dict, where: str = "") -> None:
    """Check an OCI ``linux.seccomp`` object without loading libseccomp, so a bad one is
    a one-line error at create time rather than a failed container start."""
    where = where or "(config)"
    if not isinstance(oci, dict):
        raise _fail(where, "not an object")
    if oci.get("listenerPath"):
        raise _fail(where, "listenerPath (SCMP_ACT_NOTIFY) is not supported")
    if oci.get("defaultAction") not in ACTIONS:
        raise _fail(where, f"unknown defaultAction {oci.get('defaultAction')!r}")
    _errno_ret(oci.get("defaultErrnoRet"), "defaultErrnoRet", where)
    for arch in _strings(oci.get("architectures"), "architectures", where):
        if not arch.startswith("SCMP_ARCH_"):
            raise _fail(where, f"unknown architecture {arch!r}")
    for flag in _strings(oci.get("flags"), "flags", where):
        if flag not in FLAGS:
            raise _fail(where, f"unsupported flag {flag!r}")
    rules = oci.get("syscalls") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise _fail(where, "syscalls must be a list of objects")
    for rule in rules:
        if not _strings(rule.get("names"), "names", where):
            raise _fail(where, "a rule has no system call names")
        if rule.get("action") not in ACTIONS:
            raise _fail(where, f"unknown action {rule.get('action')!r} for {rule['names'][0]}")
        _errno_ret(rule.get("errnoRet"), "errnoRet", where)
        args = rule.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, dict) for a in args):
            raise _fail(where, f"args of {rule['names'][0]} must be a list of objects")
        for arg in args:
            if arg.get("op") not in OPERATORS:
                raise _fail(where, f"unknown operator {arg.get('op')!r} for {rule['names'][0]}")
            if not isinstance(arg.get("index"), int) or not 0 <= arg["index"] < MAX_ARGS:
                raise _fail(where, f"argument index of {rule['names'][0]} must be 0 to 5")
            for key in ("value", "valueTwo"):
                v = arg.get(key, 0)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
                    raise _fail(where, f"{key} of {rule['names'][0]} must be a 64-bit number")


@dataclass(frozen=True)
class Program:
    """A filter compiled to a BPF program (``struct sock_filter`` array) and the
    seccomp(2) flags to load it with. Loading needs no libseccomp, so the program can
    be built anywhere (another process, another thread) and loaded late."""

    bpf: bytes
    flags: int = 0

    def load(self) -> None:
        """Load the filter into the calling process (and its threads, with TSYNC): the
        seccomp(2) call seccomp_load(3) ends in. The kernel wants no_new_privs or
        CAP_SYS_ADMIN first."""
        from vmm.container.linux._libc import ffi, lib

        program = ffi.from_buffer("struct sock_filter[]", self.bpf)
        fprog = ffi.new("struct sock_fprog *", {"len": len(program), "filter": program})
        result = lib.pyvmm_seccomp_set_filter(self.flags, fprog)
        if result > 0:
            raise SeccompError(f"seccomp: thread {result} could not be synchronized")
        if result < 0:
            raise SeccompError(f"seccomp: loading the filter: {os.strerror(ffi.errno)}")

    def encode(self) -> bytes:
        """The program as bytes for a pipe: the flags (4 bytes), then the BPF."""
        return self.flags.to_bytes(4, "little") + self.bpf

    @classmethod
    def decode(cls, data: bytes) -> Program:
        return cls(data[4:], int.from_bytes(data[:4], "little"))


def build(oci: dict) -> Program:
    """Compile ``oci`` (an OCI ``linux.seccomp`` object, ``validate``d) to BPF with
    libseccomp: seccomp_init, seccomp_arch_add, seccomp_rule_add_array for every rule,
    and seccomp_export_bpf for the program that seccomp_load(3) would load.

    Some 10 ms for Docker's profile and three architectures, so a runtime does it off
    its critical path. System call names that libseccomp does not know on this
    architecture are skipped, as runc does, so one profile serves old and new kernels.
    """
    from vmm.container.linux import _libc
    from vmm.container.linux._seccomp import ffi, lib  # only a filtered start loads libseccomp

    def action(name: str, ret: int | None) -> int:
        if name == "SCMP_ACT_ERRNO":
            return lib.pyvmm_act_errno(errno.EPERM if ret is None else ret)
        if name == "SCMP_ACT_TRACE":
            return lib.pyvmm_act_trace(errno.EPERM if ret is None else ret)
        return getattr(lib, "SCMP_ACT_KILL_THREAD" if name == "SCMP_ACT_KILL" else name)

    flags = 0
    for flag in oci.get("flags") or []:
        flags |= getattr(_libc.lib, flag)
    default = action(oci["defaultAction"], oci.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise SeccompError("seccomp: libseccomp could not create a filter")
    try:
        for arch in oci.get("architectures") or []:
            token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
            if token == 0:
                raise SeccompError(f"seccomp: libseccomp does not know architecture {arch}")
            result = lib.seccomp_arch_add(ctx, token)
            if result != -errno.EEXIST:  # the native architecture is always there
                _check(result, f"adding architecture {arch}")
        for rule in oci.get("syscalls") or []:
            act = action(rule["action"], rule.get("errnoRet"))
            if act != default:  # libseccomp refuses a rule that changes nothing
                _add_rule(ctx, act, rule, ffi, lib)
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(lib.seccomp_export_bpf(ctx, fd), "generating the filter")
            return Program(os.pread(fd, os.lseek(fd, 0, os.SEEK_END), 0), flags)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def _check(result: int, what: str) -> None:
    """libseccomp returns -errno."""
    if result < 0:
        raise SeccompError(f"seccomp: {what}: {os.strerror(-result)}")


def _add_rule(ctx, act: int, rule: dict, ffi, lib) -> None:
    args = rule.get("args") or []
    conds = ffi.new("struct scmp_arg_cmp[]", len(args) or 1)
    for c, arg in zip(conds, args, strict=False):
        c.arg, c.op = arg["index"], getattr(lib, arg["op"])
        c.datum_a, c.datum_b = arg.get("value", 0), arg.get("valueTwo", 0)
    # Conditions on one argument are alternatives (runc): one rule each.
    if len({a["index"] for a in args}) < len(args):
        groups = [(1, conds + i) for i in range(len(args))]
    else:
        groups = [(len(args), conds)]
    for name in rule["names"]:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr != lib.__NR_SCMP_ERROR:
            for count, array in groups:
                _check(lib.seccomp_rule_add_array(ctx, act, nr, count, array), f"rule {name}")


def install(oci: dict) -> None:
    """Build the filter ``oci`` and load it into the calling process at once."""
    build(oci).load()
