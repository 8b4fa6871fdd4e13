"""The container's init, from fork to execve, as ``config.json`` describes it.

``spawn`` runs in the runtime (``create``), for both front ends (``pyvmm-runtime``
and ``pyvmm container``, whose extras are ``Extras``); the init it forks talks back
over two close-on-exec pipes, one message per step, so that every failure before the
container is ``created`` is reported by ``create`` itself (one line, exit 1) and the
runtime can clean up:

    runtime                               init
    [user namespace: a first child unshares it; the runtime writes its id maps]
    fork (into new or joined PID ns;
    clone3 into the cgroup where the
    kernel can)                       ->
    "G", then moves it into the cgroup    stdio, PDEATHSIG (Extras), oomScoreAdj,
    (unless born there), compiles the     namespaces (setns by path, unshare the rest
    seccomp filter in a thread            but cgroup), hostname, lo, rootfs (the
                                          engine's overlay on it) and mounts, devices
                                      <-  "H"
    prestart, createRuntime hooks,
    "C" + pid, the compiled filter    ->  cgroup namespace (inside its cgroup now),
                                          createContainer hooks, pivot_root, sysctl,
                                          masked/readonly paths, readonly root, cwd,
                                          terminal, the command looked up
                                      <-  "R"   (or "E" + status + one line, any step)
    create returns                        blocks opening exec.fifo until ``start``;
                                          startContainer hooks; rlimits, user,
                                          capabilities, no_new_privs, seccomp; execve
                                          (a failure: "STATUS\nMESSAGE" on
                                          ``Extras.exec_report``, else on stderr)

``exec`` (``join``) enters a running container's namespaces and cgroup and execs a
second process there through the same last step (``become``).

Every process forked here that enters the container is non-dumpable until its
execve, and every execve into the container (the command, the hooks the init runs)
goes through the sealed trampoline: see ``exeseal.py``.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from vmm.container.linux import capabilities, exeseal, inroot, mounts, namespaces, seccomp
from vmm.container.linux._libc import lib
from vmm.container.linux.cgroups import Cgroup
from vmm.container.linux.libc import check, mount, prctl
from vmm.container.oci.spec import NAMESPACES, Process, Spec, SpecError
from vmm.errors import PyvmmError

CLONE = {
    "mount": lib.CLONE_NEWNS,
    "uts": lib.CLONE_NEWUTS,
    "ipc": lib.CLONE_NEWIPC,
    "network": lib.CLONE_NEWNET,
    "cgroup": lib.CLONE_NEWCGROUP,
    "pid": lib.CLONE_NEWPID,
    "user": lib.CLONE_NEWUSER,
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class InitError(PyvmmError):
    """A step of the init failed. ``status`` is the shell's and Docker's for it: 127
    the command was not found, 126 it could not run, 1 anything else (runc's
    ``create`` exits 1 whatever it is)."""

    exit_code = 1

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class InitDied(InitError):
    """The init ended without a word: ``spawn`` adds how (its wait status)."""


@dataclass
class Extras:
    """What an engine adds to the one ``spawn``, where containerd's shim and conmon
    add it around runc: the init's stdio (default: the runtime's own), ``on_rootfs``
    (see ``mount_rootfs``: the engine's overlay), SIGKILL when the runtime process
    dies (PR_SET_PDEATHSIG: an engine's monitor never leaves an unsupervised
    container), and ``exec_report``, a pipe on which a failed execve after ``start``
    is reported as "STATUS\nMESSAGE" (closed without a word: the command runs)."""

    stdio: tuple[int, int, int] | None = None
    on_rootfs: Callable[[str], None] | None = None
    pdeathsig: bool = False
    exec_report: int | None = None


def validate(spec: Spec) -> None:
    """What ``config.json`` asks of the init that can be checked before anything exists."""
    p = spec.process
    if p.capabilities is not None:
        for names in p.capabilities.values():
            capabilities.normalize(names)
    if spec.seccomp is not None:
        from vmm.container.linux import seccomp

        seccomp.validate(spec.seccomp, "linux.seccomp")
    for key in spec.sysctl:
        if "/" in key or ".." in key.split("."):
            raise SpecError(f"config.json: linux.sysctl {key!r} is not a sysctl name")
    for m in spec.mounts:
        why = mounts.refused(m.destination, m.type, m.source)
        if why:
            raise SpecError(f"config.json: mount on {m.destination}: {why}")
    for ns in spec.namespaces:
        if ns.path is not None and not os.path.exists(ns.path):
            raise SpecError(f"config.json: namespace path {ns.path} does not exist")


def _send(fd: int, message: str) -> None:
    os.write(fd, message.encode() + b"\n")


def _send_failure(fd: int, e: BaseException) -> None:
    """Tell the runtime why a step failed: "E" + status + one line."""
    status = e.status if isinstance(e, InitError) else 1
    _send(fd, f"E{status} {_describe(e)}")


def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from a pipe (fewer: the writer closed it early)."""
    chunks = []
    while size > 0 and (chunk := os.read(fd, size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class FilterBuild:
    """The container's seccomp filter, compiled in a thread of the runtime while the
    init sets itself up (and is moved into its cgroup): libseccomp takes some 10 ms
    for Docker's profile, which would otherwise be on the path to the container's
    first instruction. Started after the fork, so no thread is ever forked mid-call.
    ``send`` hands the program to the init, which loads it last (``receive_filter``)."""

    def __init__(self, oci: dict | None):
        self._oci = oci
        self._result: seccomp.Program | PyvmmError = seccomp.Program(b"")
        self._thread = threading.Thread(target=self._build, daemon=True)
        if oci is not None:
            self._thread.start()

    def _build(self) -> None:
        try:
            self._result = seccomp.build(self._oci)
        except PyvmmError as e:
            self._result = e

    def message(self) -> bytes:
        """The compiled filter, framed for the pipe (empty: none); waits for the thread."""
        if self._oci is not None:
            self._thread.join()
        if isinstance(self._result, PyvmmError):
            raise self._result
        program = self._result.encode() if self._result.bpf else b""
        return struct.pack("<I", len(program)) + program


def receive_filter(fd: int) -> seccomp.Program | None:
    """The init's end of ``FilterBuild.message``: None for no filter."""
    header = _read_exactly(fd, 4)
    if len(header) < 4:
        os._exit(1)  # the runtime failed, and reports why itself
    size = struct.unpack("<I", header)[0]
    return seccomp.Program.decode(_read_exactly(fd, size)) if size else None


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        data += byte
    return data.decode().rstrip("\n")


class _Channel:
    """The runtime's end: read one line at a time from the init, write to it."""

    def __init__(self, fd: int, to: int):
        self.f = os.fdopen(fd, "rb")
        self.to = to

    def tell(self, message: bytes) -> None:
        try:
            os.write(self.to, message)
        except BrokenPipeError:  # it died; its last words say why
            self.expect("\0")

    def expect(self, tag: str) -> str:
        line = self.f.readline().decode(errors="replace").rstrip("\n")
        if line.startswith("E"):
            status, _, message = line[1:].partition(" ")
            raise InitError(message, int(status) if status.isdigit() else 1)
        if not line.startswith(tag):
            raise InitDied("the container's init died during setup")
        return line[len(tag) :]


def spawn(cid: str, spec: Spec, cg: Cgroup, fifo: str, run_hooks: Callable[[tuple, int], None], *,
          console_socket: str | None = None, no_pivot: bool = False,
          preserve_fds: int = 0, subreaper: bool = False,
          extras: Extras | None = None) -> int:  # fmt: skip
    """Fork the container's init and see it to ``created``; return its pid (host view).

    ``run_hooks(points, pid)`` runs the runtime-side hooks of ``points``.
    ``subreaper``: this process stays the init's parent (``run`` waits for it).
    """
    extras = extras or Extras()
    if subreaper:
        prctl(lib.PR_SET_CHILD_SUBREAPER, 1)
    console = _connect(console_socket) if console_socket else None
    # Opened here, where the state directory is in reach (not from a user namespace).
    fifo = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    from_r, from_w = os.pipe2(os.O_CLOEXEC)
    to_r, to_w = os.pipe2(os.O_CLOEXEC)
    channel = _Channel(from_r, to_w)
    pid = None
    born_inside = False
    try:
        user = spec.namespace("user")
        pid_ns = spec.namespace("pid")
        if user is not None:
            with exeseal.nondumpable():
                first = os.fork()
            if first == 0:
                _first_child(cid, spec, user, pid_ns, cg, fifo, (from_w, to_r), console,
                             no_pivot, preserve_fds, extras)  # fmt: skip
            channel.expect("U")
            _write_maps(first, spec)
            channel.tell(b"M")
            pid = int(channel.expect("P"))
            os.waitpid(first, 0)
        else:
            with exeseal.nondumpable(), _pid_namespace(pid_ns):
                pid = cg.fork_inside()
                born_inside = pid is not None
                if pid is None:
                    pid = os.fork()
                if pid == 0:  # (inside: the child must not leave the namespace block)
                    _init(cid, spec, cg, fifo, (from_w, to_r), console, no_pivot, preserve_fds,
                          extras)  # fmt: skip
        os.close(from_w)
        os.close(to_r)
        from_w = to_r = -1
        syscall_filter = FilterBuild(spec.seccomp)
        # "go", then the move into the cgroup while the init builds its namespaces and
        # mounts: a v1 migration can wait out an RCU grace period (cgroups.py).
        channel.tell(b"G")
        if not born_inside:
            cg.add(pid)
        channel.expect("H")
        run_hooks(("prestart", "createRuntime"), pid)
        channel.tell(f"C{pid}\n".encode() + syscall_filter.message())
        channel.expect("R")
        return pid
    except InitDied as e:
        if pid:
            raise InitDied(f"{e}: {_ended(pid)}") from None
        raise
    except BaseException:
        if pid:
            _kill(pid)
        raise
    finally:
        channel.f.close()
        for fd in (from_w, to_r, to_w, console, fifo):
            if fd is not None and fd >= 0:
                os.close(fd)


def _ended(pid: int) -> str:
    """How the child ``pid`` ended (reaped now), in words."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "not this process's child"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


class _pid_namespace:
    """The next child is born in a new PID namespace, in ``ns.path``'s, or in ours."""

    def __init__(self, ns):
        self.ns = ns
        self.new = None

    def __enter__(self):
        if self.ns is None:
            return
        if self.ns.path is None:
            self.new = namespaces.pid_namespace_for_children()
            self.new.__enter__()
            return
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        _setns(self.ns.path, lib.CLONE_NEWPID)

    def __exit__(self, *exc):
        if self.new is not None:
            self.new.__exit__(*exc)
        elif self.ns is not None:
            check(lib.setns(self.own, lib.CLONE_NEWPID), "setns")
            os.close(self.own)


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        check(lib.setns(fd, kind), f"setns {path}")
    finally:
        os.close(fd)


def _write_maps(pid: int, spec: Spec) -> None:
    """The user namespace's id maps (user_namespaces(7)), written by the runtime: as
    host root it may map any ids."""
    for name, maps in (("uid_map", spec.uid_mappings), ("gid_map", spec.gid_mappings)):
        if maps:
            text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)


def _connect(path: str) -> int:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise InitError(f"--console-socket {path}: {e.strerror}") from None
    return s.detach()


def _first_child(cid, spec, user, pid_ns, cg, fifo: int, pipes, console, no_pivot, preserve_fds,
                 extras):  # fmt: skip
    """With a user namespace: enter it first, so that it owns every namespace made
    after it, then fork the init into the PID namespace; never returns."""
    from_w, to_r = pipes
    try:
        if user.path:
            _setns(user.path, lib.CLONE_NEWUSER)
            _send(from_w, "U")
        else:
            namespaces.unshare(lib.CLONE_NEWUSER)
            _send(from_w, "U")
        if os.read(to_r, 1) != b"M":
            os._exit(1)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if pid_ns is not None:  # this process exits next: no need to leave it again
            if pid_ns.path:
                _setns(pid_ns.path, lib.CLONE_NEWPID)
            else:
                namespaces.unshare(lib.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            _init(cid, spec, cg, fifo, pipes, console, no_pivot, preserve_fds, extras)
        _send(from_w, f"P{pid}")
    except BaseException as e:  # noqa: BLE001 - never return into the runtime's code
        _send_failure(from_w, e)
    os._exit(0)


def _describe(e: BaseException) -> str:
    if isinstance(e, PyvmmError):
        return str(e)
    if isinstance(e, OSError):
        return f"container init: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    return f"container init: {e!r}"


def _init(cid: str, spec: Spec, cg: Cgroup, fifo_fd: int, pipes, console, no_pivot,
          preserve_fds, extras: Extras):  # fmt: skip
    """The container's init: see the module docstring; never returns."""
    from_w, to_r = pipes
    try:
        if extras.stdio is not None:
            for target, fd in enumerate(extras.stdio):
                os.dup2(fd, target)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; exec keeps that
            signal.signal(sig, signal.SIG_DFL)
        if extras.pdeathsig:
            prctl(lib.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.read(to_r, 1) != b"G":
            os._exit(1)
        process = spec.process
        trampoline = exeseal.Trampoline()  # while the package's files are in reach
        _preload(process.terminal, bool(spec.hooks.get("startContainer")))
        if process.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process.oom_score_adj))
        enter_namespaces(spec, skip=("cgroup",))
        mount_rootfs(spec, cg, extras.on_rootfs)
        _send(from_w, "H")
        message = _read_line(to_r)
        if not message.startswith("C"):
            os._exit(1)
        syscall_filter = receive_filter(to_r)
        _cgroup_namespace(spec)  # now that the runtime has moved this process in
        state = {"ociVersion": spec.oci_version, "id": cid, "status": "created",
                 "pid": int(message[1:]), "bundle": spec.bundle,
                 "annotations": spec.annotations}  # fmt: skip
        from vmm.container.oci import hooks

        hooks.run(spec.hooks.get("createContainer", []), state, "createContainer", trampoline)
        enter_rootfs(spec, no_pivot)
        _chdir(process.cwd)
        if process.terminal:
            _terminal(console, process)
        if console is not None:
            os.close(console)
        executable = lookup(process)
        for limit in process.rlimits:  # as runc, before "created": ``create`` reports it
            limit.apply()
        if not os.path.exists(f"/proc/self/fd/{fifo_fd}"):
            raise InitError("pyvmm needs /proc mounted in the container (config.json mounts)")
        _send(from_w, "R")
    except BaseException as e:  # noqa: BLE001 - never return into the runtime's code
        _send_failure(from_w, e)
        os._exit(1)
    # created: wait for ``start``; from here on failures go to the exec report, if
    # any, else to the container's stderr.
    try:
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        from vmm.container.oci import hooks

        hooks.run(spec.hooks.get("startContainer", []), {**state, "status": "running"},
                  "startContainer", trampoline)  # fmt: skip
        become(process, executable, trampoline, preserve_fds, syscall_filter,
               keep_fd=extras.exec_report)  # fmt: skip
    except BaseException as e:  # noqa: BLE001
        if extras.exec_report is not None:
            os.write(extras.exec_report, f"127\n{_describe(e)}".encode())
        else:
            os.write(2, f"pyvmm-runtime: {_describe(e)}\n".encode())
    os._exit(127)


def _cgroup_namespace(spec: Spec) -> None:
    """Join or create the cgroup namespace: after the move into the container's cgroup,
    so that the container sees that cgroup as its root."""
    ns = spec.namespace("cgroup")
    if ns is not None and ns.path:
        _setns(ns.path, lib.CLONE_NEWCGROUP)
    elif ns is not None:
        namespaces.new_cgroup_namespace()


def _preload(terminal: bool, hooks: bool) -> None:
    """Import now what is used after pivot_root, where the host's Python is gone."""
    if terminal:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401
    if hooks:
        import subprocess  # noqa: F401


def enter_namespaces(spec: Spec, skip: tuple[str, ...] = ()) -> None:
    """Join the namespaces given by path, create the others (PID and user are done,
    and ``skip``'s are left to the caller)."""
    flags = 0
    done = ("user", "pid", *skip)
    joined = [n for n in spec.namespaces if n.path and n.type not in done]
    for ns in sorted(joined, key=lambda n: n.type == "mount"):  # mount last
        _setns(ns.path, CLONE[ns.type])
    for ns in spec.namespaces:
        if ns.path is None and ns.type not in done:
            flags |= CLONE[ns.type]
    namespaces.unshare(flags)
    if spec.hostname is not None:
        namespaces.set_hostname(spec.hostname)
    if spec.domainname is not None:
        data = spec.domainname.encode()
        check(lib.setdomainname(data, len(data)), "setdomainname")
    net = spec.namespace("network")
    if net is not None and net.path is None:
        namespaces.loopback_up()


def mount_rootfs(spec: Spec, cg: Cgroup | None,
                 on_rootfs: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Make the rootfs a mount point of its own and mount ``mounts`` into it.

    ``on_rootfs(root)``, once no mount can reach the host any more and before the
    rootfs is used: where ``pyvmm container`` mounts the image's overlay on it.
    """
    # Private if asked, else slave: nothing made here may reach the host. Shared and
    # unbindable are applied to the new root after pivot_root (an unbindable source
    # cannot be bind-mounted, and pivot_root refuses a shared parent).
    private = spec.rootfs_propagation in ("private", "rprivate")
    mount(None, "/", None, (lib.MS_PRIVATE if private else lib.MS_SLAVE) | lib.MS_REC)
    if on_rootfs is not None:
        on_rootfs(spec.root)
    mount(spec.root, spec.root, None, lib.MS_BIND | lib.MS_REC)
    userns = spec.namespace("user") is not None
    dev_mounted = False
    root = spec.root
    for m in spec.mounts:  # every destination resolved inside the rootfs (inroot.py)
        flags, propagations, data = mounts.parse_options(m.options)
        dest = m.destination
        if m.type == "cgroup" or m.type == "cgroup2":
            _cgroup_mount(root, dest, flags, cg)
        elif m.type == "bind" or flags & lib.MS_BIND:
            source = os.path.join(spec.bundle, m.source or "")
            if not os.path.exists(source):
                raise InitError(f"mount source {m.source} for {dest} does not exist")
            mounts.mount_into(root, dest, source, None, lib.MS_BIND | (flags & lib.MS_REC),
                              file=not os.path.isdir(source))  # fmt: skip
            rest = flags & ~(lib.MS_BIND | lib.MS_REC | lib.MS_REMOUNT)
            if rest:
                mounts.remount_into(root, dest, rest)
        else:
            try:
                mounts.mount_into(root, dest, m.source or m.type, m.type, flags, data or None,
                                  copy_up=mounts.TMPCOPYUP in m.options)  # fmt: skip
            except PermissionError:
                if not userns or m.type not in ("mqueue", "sysfs"):
                    raise
                # Not ours to mount from a user namespace: the host's, read-only (runc).
                mounts.mount_into(root, dest, f"/{m.type == 'sysfs' and 'sys' or 'dev/mqueue'}",
                                  None, lib.MS_BIND | lib.MS_REC)  # fmt: skip
            dev_mounted |= m.destination == "/dev"
        mounts.propagate_into(root, dest, propagations)
    if dev_mounted:
        with inroot.target(root, "/dev", create=False) as dev:
            mounts.populate_dev(dev, bind_from_host=userns)
    for d in spec.devices:
        _make_device(root, d, userns)


def _cgroup_mount(rootfs: str, destination: str, flags: int, cg: Cgroup) -> None:
    """The container's own cgroups at ``destination``: on v1 a tmpfs with one bind
    mount per controller hierarchy it is in, on v2 its directory; read-only if asked."""
    read_only = flags & lib.MS_RDONLY
    paths = cg.host_paths()
    binds = [(destination, paths[""])] if cg.version == "v2" else [
        (f"{destination}/{controller}", path) for controller, path in paths.items()]  # fmt: skip
    if cg.version == "v1":
        mounts.mount_into(rootfs, destination, "tmpfs", "tmpfs", mounts.NOSUID_NODEV_NOEXEC,
                          "mode=755")  # fmt: skip
    for where, path in binds:
        mounts.mount_into(rootfs, where, str(path), None, lib.MS_BIND | lib.MS_REC)
        if read_only:
            mounts.remount_into(rootfs, where, lib.MS_RDONLY)
    if read_only and cg.version == "v1":
        with inroot.target(rootfs, destination, create=False) as target:
            mount(None, target, None, lib.MS_REMOUNT | lib.MS_RDONLY | mounts.NOSUID_NODEV_NOEXEC)


def _make_device(rootfs: str, d, userns: bool) -> None:
    """The node ``d.path``, its directory resolved inside ``rootfs`` (``inroot.py``)."""
    import stat

    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    if userns:  # mknod is not allowed: the host's node, bound (runc)
        mounts.mount_into(rootfs, d.path, d.path, None, lib.MS_BIND, file=True)
        return
    directory, _, name = d.path.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        raise InitError(f"device path {d.path} does not name a file")
    with inroot.target(rootfs, directory or "/") as parent:
        node = f"{parent}/{name}"  # one plain name under the resolved directory
        if os.path.lexists(node):
            os.unlink(node)
        old = os.umask(0)
        try:
            os.mknod(node, kinds[d.type] | (d.file_mode or 0o666) & 0o7777,
                     os.makedev(d.major, d.minor))  # fmt: skip
        finally:
            os.umask(old)
        os.chown(node, d.uid or 0, d.gid or 0, follow_symlinks=False)


def enter_rootfs(spec: Spec, no_pivot: bool = False) -> None:
    """pivot_root into the rootfs (``no_pivot``: move it over / and chroot), then
    sysctls, masked and read-only paths, the readonly root and its propagation."""
    if no_pivot:
        os.chdir(spec.root)
        mount(spec.root, "/", None, lib.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
    else:
        mounts.pivot(spec.root)
    for key, value in spec.sysctl.items():
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except OSError as e:
            raise InitError(f"sysctl {key}={value}: {e.strerror}") from None
    mounts.mask(spec.masked_paths, spec.readonly_paths)
    if spec.readonly:
        keep = os.statvfs("/").f_flag & mounts.NOSUID_NODEV_NOEXEC
        mount(None, "/", None, lib.MS_BIND | lib.MS_REMOUNT | lib.MS_RDONLY | keep)
    propagation = mounts.PROPAGATION.get(spec.rootfs_propagation)
    if propagation:
        mount(None, "/", None, propagation)


def _chdir(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)


def _terminal(console: int, process: Process) -> None:
    """A pseudo-terminal from the container's own devpts: the master goes to the
    engine over the console socket (SCM_RIGHTS), the slave becomes the stdio."""
    import fcntl
    import socket
    import struct
    import termios

    master, slave = os.openpty()
    if process.console_size:
        rows, cols = process.console_size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    sock = socket.socket(fileno=console)
    try:
        socket.send_fds(sock, [os.ttyname(slave).encode()], [master])
    finally:
        sock.detach()
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _env(process: Process) -> dict[str, str]:
    env = {}
    for item in process.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def lookup(process: Process) -> str:
    """The command's file, as execvp would find it in the container (runc checks at
    create time, so a typo fails ``create``, not the running container)."""
    import stat

    name = process.args[0]
    if "/" in name:  # Go's exec.LookPath, whose words engines read (Podman: 126, 127)
        try:
            mode = os.stat(name).st_mode
        except OSError as e:
            raise InitError(f'exec: "{name}": stat {name}: {e.strerror.lower()}') from None
        if stat.S_ISDIR(mode) or not mode & 0o111:
            raise InitError(f'exec: "{name}": permission denied')
        return name
    path = _env(process).get("PATH", DEFAULT_PATH)
    candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise InitError(f'exec: "{name}": executable file not found in $PATH', 127)


def become(process: Process, executable: str, trampoline: exeseal.Trampoline,
           preserve_fds: int = 0, syscall_filter=None,
           keep_fd: int | None = None) -> None:  # fmt: skip
    """The last step: rlimits, user and groups, capabilities, no_new_privs, seccomp,
    then execve through ``trampoline`` (fds from 3 + ``preserve_fds`` closed, but
    ``keep_fd``, close-on-exec, on which the trampoline reports a failed exec as
    "STATUS\\nMESSAGE"); returns only by raising why the trampoline could not run."""
    for limit in process.rlimits:  # while CAP_SYS_RESOURCE may still raise them
        limit.apply()
    if syscall_filter is not None and not process.no_new_privileges:
        syscall_filter.load()  # needs CAP_SYS_ADMIN, about to be dropped
        syscall_filter = None
    user = process.user
    keep = process.capabilities is not None
    if keep:
        prctl(lib.PR_SET_KEEPCAPS, 1)
    os.setgroups(user.additional_gids)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if user.umask is not None:
        os.umask(user.umask)
    if keep:
        prctl(lib.PR_SET_KEEPCAPS, 0)
        if user.uid != 0:  # setuid cleared the effective set; take it back to drop
            capabilities.raise_effective()
        capabilities.apply(process.capabilities)
    if process.no_new_privileges:
        capabilities.set_no_new_privs()
    if syscall_filter is not None:
        syscall_filter.load()
    first = 3 + preserve_fds
    for keep in sorted({trampoline.fd, keep_fd if keep_fd is not None else trampoline.fd}):
        if keep >= first:
            os.closerange(first, keep)
            first = keep + 1
    os.closerange(first, os.sysconf("SC_OPEN_MAX"))
    trampoline.execve(executable, process.args, _env(process), report=keep_fd)


def join(state, process: Process, *, console_socket: str | None = None,
         preserve_fds: int = 0, seccomp_profile: dict | None = None,
         stdio: tuple[int, int, int] | None = None) -> int:  # fmt: skip
    """``exec``: start ``process`` in the running container ``state`` (its init's
    namespaces and cgroup); return its pid, this process its parent's subreaper.
    ``stdio``, as ``Extras.stdio``: its stdin, stdout, stderr (default: ours)."""
    prctl(lib.PR_SET_CHILD_SUBREAPER, 1)
    console = _connect(console_socket) if console_socket else None
    from_r, from_w = os.pipe2(os.O_CLOEXEC)
    to_r, to_w = os.pipe2(os.O_CLOEXEC)
    channel = _Channel(from_r, to_w)
    kinds = [k for k in NAMESPACES.values() if _differs(state.pid, k)]
    fds = {k: os.open(f"/proc/{state.pid}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC) for k in kinds}
    first = os.fork()
    if first == 0:
        try:
            exeseal.make_nondumpable()  # before it joins anything; its child inherits it
            trampoline = exeseal.Trampoline()
            _preload(process.terminal, False)
            order = sorted(fds, key=lambda k: (k != "user", k == "mnt"))  # user first, mnt last
            for k in order:
                check(lib.setns(fds[k], 0), f"setns {k}")
            pid = os.fork()
            if pid == 0:
                try:
                    for target, fd in enumerate(stdio or ()):
                        os.dup2(fd, target)
                    for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # as _init: exec keeps them
                        signal.signal(sig, signal.SIG_DFL)
                    if os.read(to_r, 1) != b"G":
                        os._exit(1)
                    filt = receive_filter(to_r)
                    if process.terminal:
                        _terminal(console, process)
                    _chdir(process.cwd)
                    executable = lookup(process)
                    _send(from_w, "R")
                    become(process, executable, trampoline, preserve_fds, filt, keep_fd=from_w)
                except BaseException as e:  # noqa: BLE001
                    _send_failure(from_w, e)
                os._exit(127)
            _send(from_w, f"P{pid}")
        except BaseException as e:  # noqa: BLE001
            _send_failure(from_w, e)
        os._exit(0)
    for fd in (*fds.values(), from_w, to_r):
        os.close(fd)
    if console is not None:
        os.close(console)
    syscall_filter = FilterBuild(seccomp_profile)
    try:
        pid = int(channel.expect("P"))
        os.waitpid(first, 0)
        from vmm.container.linux import cgroups

        cgroups.for_container(state.cgroup_name, state.cgroup_version, state.cgroup_parent,
                              oci=True).add(pid)  # fmt: skip
        channel.tell(b"G" + syscall_filter.message())
        channel.expect("R")
        failure = channel.f.read().decode(errors="replace")  # EOF: the exec happened
        if failure:
            os.waitpid(pid, 0)
            raise InitError(f"exec: {failure.partition(chr(10))[2]}")
        return pid
    finally:
        channel.f.close()
        os.close(to_w)


def _differs(pid: int, kind: str) -> bool:
    """Whether the container's ``kind`` namespace is not ours (setns to our own user
    namespace is refused with EINVAL)."""
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino != os.stat(f"/proc/self/ns/{kind}").st_ino
    except FileNotFoundError:
        return False
