"""The container engine's lifecycle: create, start (attached or detached), stop, kill, rm.

The engine is a client of the OCI core (``runtime.py``) the way containerd and
Podman are clients of runc. ``run`` is ``create`` then ``start``: ``create`` records
the container and writes its bundle (``bundle.py``: ``config.json``, from the image
and the flags; everything the container gets is read back from it by ``spec.py``).
Starting makes the calling process the container's *monitor* (a detached start first
forks a daemon to be it), which:

1. claims the container in its record;
2. asks the core to ``create`` it from the bundle, with the engine's extras for the
   one ``init.spawn`` (``init.Extras``): the init's stdio (pipes to the monitor, or
   the log), the image's overlay mounted on the rootfs inside the container's own
   mount namespace, SIGKILL if the monitor dies (PR_SET_PDEATHSIG: a killed runtime
   never leaves an unsupervised container), and a pipe on which a failed execve
   reports Docker's status (126, 127);
3. records it as running, and ``start``s it: the init execs the command;
4. copies the container's output to its own and to the container's log, waits for
   it to exit, records the exit status, the peak memory and whether the OOM killer
   struck, and ``delete``s it in the core (its cgroup and the core's state). The
   mounts need no cleanup: they live only in the container's mount namespace, which
   dies with its last process.

``reconcile`` (run by ``ps`` and every command that reads a container) records the
end of a container whose monitor died, and removes what the core still holds of it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vmm.container.engine import bundle, stdio, volumes
from vmm.container.engine.record import ContainerRecord
from vmm.container.engine.security import Security
from vmm.container.image import images
from vmm.container.image.images import ImageRecord
from vmm.container.linux import capabilities, cgroups
from vmm.container.linux._libc import lib
from vmm.container.linux.cgroups import Limits
from vmm.container.linux.fdtree import remove_tree
from vmm.container.linux.libc import mount, umount2
from vmm.container.oci import init, runtime
from vmm.container.store import layers, records
from vmm.container.store.names import check_name
from vmm.container.store.records import Broken
from vmm.container.store.state import Store
from vmm.errors import PyvmmError
from vmm.proc import is_alive, process_start, wait_dead

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ACTIVE = ("starting", "running")


class ContainerStartError(PyvmmError):
    """The container's command could not be started; ``exit_code`` is Docker's (125-127)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def _dir(store: Store, cid: str) -> Path:
    return store.containers / cid


class BrokenContainer(Broken):
    """A container whose record does not load: all that is known is its id (its
    directory's name). ``ps -a`` lists it, ``inspect`` says why, ``rm -f`` removes it."""

    @property
    def id(self) -> str:
        return self.path.parent.name


Container = ContainerRecord | BrokenContainer


# The engine's record of a container; the OCI core's observed state is another file,
# ``state.json`` under ``store.runtime``, with another type (``runtime.State``).
RECORD = "container.json"


def _save(store: Store, rec: ContainerRecord) -> None:
    records.write(_dir(store, rec.id) / RECORD, rec)


def _is_entry(name: str) -> bool:
    """Whether ``name`` can only name an entry of the directory it is looked up in."""
    return name not in ("", ".", "..") and "/" not in name


def _load(store: Store, cid: str) -> Container | None:
    """The container ``cid`` (a directory entry of the store's), or None if there is none."""
    if not _is_entry(cid) or not _dir(store, cid).is_dir():
        return None
    path = _dir(store, cid) / RECORD
    if not path.exists():  # written by a pyvmm that called it state.json: renamed once
        with contextlib.suppress(FileNotFoundError):
            os.rename(_dir(store, cid) / "state.json", path)
    rec = records.load(path, ContainerRecord, id=cid)
    return BrokenContainer(rec.path, rec.reason) if isinstance(rec, Broken) else rec


def _all(store: Store) -> list[Container]:
    """Every container, oldest first, the broken ones last."""
    if not store.containers.is_dir():
        return []
    recs = [r for r in (_load(store, n) for n in sorted(os.listdir(store.containers))) if r]
    return sorted(records.loaded(recs), key=lambda r: r.created) + [
        r for r in recs if isinstance(r, BrokenContainer)
    ]


def _unmount_under(path: Path) -> None:
    """Detach whatever is mounted at or under ``path`` on the host (deepest first).

    pyvmm mounts a container's overlay only in its own mount namespace, so there is
    normally nothing; a container whose record is lost may have been set up by hand
    (docs/containers.md, "the same container three ways")."""
    top = str(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    inside = [p for p in points if p == top or p.startswith(top + "/")]
    for point in sorted(set(inside), key=len, reverse=True):
        with contextlib.suppress(OSError):
            umount2(point, lib.MNT_DETACH)


def _remove_files(store: Store, cid: str, cgroup: str | None = None) -> None:
    """Remove what the OCI core holds of the container (its cgroup, killing what is
    left in it, and its state), its mounts, directory and names, whichever exist;
    caller locks. ``cgroup`` is the version it ran under, None for the host's."""
    runtime.delete(str(store.runtime), cid, force=True)
    cgroups.for_container(cid, cgroup, store.cgroup_parent, oci=True).remove()
    if net := _networked(store, cid):
        net.disconnect(store, cid)
    _unmount_under(_dir(store, cid))
    for path in (_dir(store, cid) / "upper", _dir(store, cid)):
        with contextlib.suppress(FileNotFoundError):  # the writable layer first: if it
            remove_tree(path)  # cannot go, the record stays for ``rm`` to report
    _remove_stale_names(store)


def _networked(store: Store, cid: str):
    """The network module if container ``cid`` has an endpoint, else None: a container
    run without ``--network`` or ``-p`` never pays for its import."""
    if not (store.endpoints / cid).exists():
        return None
    from vmm.container.engine import network

    return network


def _remove_stale_names(store: Store) -> None:
    """Remove the names of containers that no longer exist (a removed one's, or one a
    crash left half-made). Caller locks."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(store.names):
            with contextlib.suppress(OSError):
                target = os.readlink(store.names / name)
                if not _is_entry(target) or not _dir(store, target).is_dir():
                    os.unlink(store.names / name)


def reconcile(store: Store, rec: Container) -> Container | None:
    """Bring ``rec`` in line with the processes that really exist; caller locks.

    A container whose monitor is gone (a killed ``pyvmm``) is recorded as exited with
    an unknown status, its cgroup removed and its network unplugged, as if it had
    exited; with ``--rm`` it is removed entirely and None is returned. A broken record
    is left as it is, for ``rm -f``.
    """
    if isinstance(rec, BrokenContainer):
        return rec
    if rec.status not in ACTIVE or is_alive(rec.monitor_pid, rec.monitor_start):
        return rec
    if is_alive(rec.pid, rec.pid_start):
        return rec  # still running; the kernel kills it when it notices the monitor gone
    cg = _cgroup(store, rec)
    rec.update(
        status="exited",
        exit_code=None,
        error=rec.error or "the pyvmm process supervising it died",
        finished_at=time.time(),
        peak_memory=cg.peak_memory(),
        oom_killed=cg.oom_killed(),
        pid=None,
    )
    if rec.auto_remove:
        try:
            _remove_files(store, rec.id, rec.cgroup)
            return None
        except PyvmmError as e:  # kept, for ``rm`` to report: ps must go on
            rec.error = f"--rm could not remove it: {e}"
    runtime.delete(str(store.runtime), rec.id, force=True)
    cg.remove()
    if net := _networked(store, rec.id):
        net.unplug(store, rec.id)
    with contextlib.suppress(OSError):  # a full disk: shown as it is now, recorded later
        _save(store, rec)
    return rec


def list_containers(store: Store) -> list[Container]:
    """Every container, each reconciled with reality (dead ones recorded, --rm ones
    gone, and the names of none removed)."""
    with store.lock():
        _remove_stale_names(store)
        if store.endpoints.is_dir():
            from vmm.container.engine import network

            network.remove_orphans(store, lambda cid: _dir(store, cid).is_dir())
        return [r for r in (reconcile(store, rec) for rec in _all(store)) if r]


def find(store: Store, ref: str) -> Container:
    """The container named ``ref``, or whose id is or starts with ``ref``; broken or not."""
    if not ref:
        raise PyvmmError("container name is empty")
    with store.lock():
        try:
            by_name = _load(store, os.readlink(store.names / ref))
        except OSError:
            by_name = None
        matches = [by_name] if by_name else [r for r in _all(store) if r.id.startswith(ref)]
        if len(matches) != 1:
            raise PyvmmError(
                f"no such container: {ref}" if not matches else f"ambiguous id prefix {ref}"
            )
        rec = reconcile(store, matches[0])
    if rec is None:
        raise PyvmmError(f"no such container: {ref}")
    return rec


def find_usable(store: Store, ref: str) -> ContainerRecord:
    """``find``, refusing a broken container (only ``rm -f`` and ``inspect`` take one)."""
    rec = find(store, ref)
    if isinstance(rec, BrokenContainer):
        raise PyvmmError(f"container {rec.id[:12]} is broken ({rec.reason}): remove it with rm -f")
    return rec


def users_of(
    store: Store, image: ImageRecord | None = None, volume: str | None = None
) -> list[str]:
    """Names of containers created from ``image`` or referring to ``volume`` (a broken
    container's record says neither: it counts as using nothing)."""
    names = []
    for rec in records.loaded(_all(store)):
        if image and rec.image_id == image.id:
            names.append(rec.name)
        if volume and any(m.source == volume for m in rec.mounts if m.type == "volume"):
            names.append(rec.name)
    return names


def layers_in_use(store: Store) -> set[str]:
    return {d for rec in records.loaded(_all(store)) for d in rec.layers}


def create(
    store: Store,
    image_ref: str | ImageRecord,
    command: list[str],
    *,
    name: str | None = None,
    hostname: str | None = None,
    volume_specs: tuple[str, ...] = (),
    limits: Limits | None = None,
    security: Security | None = None,
    auto_remove: bool = False,
    claim: bool = False,
    network_mode: str | None = None,
    publish: tuple[str, ...] = (),
    entrypoint: str | None = None,
    env: tuple[str, ...] = (),
    env_files: tuple[str, ...] = (),
    workdir: str | None = None,
    user: str | None = None,
    tty: bool = False,
    interactive: bool = False,
    read_only: bool = False,
    tmpfs: tuple[str, ...] = (),
    init: bool = False,
) -> ContainerRecord:
    """Record a new container and its empty writable layer; nothing runs yet.

    ``image_ref`` is NAME[:TAG], or an image that is not in the store (a build's
    step: ``build.py``). Everything a user can get wrong is checked before anything
    is created. With
    ``claim``, the container is created already claimed by this process for starting
    (one locked step instead of two on ``run``'s path). ``network_mode`` and
    ``publish``: ``--network`` and ``-p`` (container/network.py; ``-p`` alone means
    the default bridge network, as in Docker). The command is Docker's: the
    entrypoint (the image's, or ``entrypoint``, "" for none) followed by ``command``,
    or if that is empty by the image's Cmd (not after an ``entrypoint`` given here).
    """
    net = None
    if network_mode or publish:  # (imported only then: every run pays for an import)
        from vmm.container.engine import network

        net = network.plan(network_mode, publish)
    if name is not None:
        check_name("container", name)
    if hostname is not None:
        check_name("hostname", hostname)
    image = image_ref if isinstance(image_ref, ImageRecord) else images.get(store, image_ref)
    mounts_ = [volumes.parse(spec) for spec in volume_specs]
    tmpfs_ = [volumes.parse_tmpfs(spec) for spec in tmpfs]
    config = image.config
    if entrypoint is None:
        command = (config.entrypoint or []) + (list(command) or config.cmd or [])
    else:
        command = ([entrypoint] if entrypoint else []) + list(command)
    if not command:
        raise PyvmmError(f"no command given and image {image.ref} has no default command")
    cwd = check_workdir(workdir) if workdir is not None else config.working_dir or "/"
    overrides = environment(env, env_files)
    cid = os.urandom(32).hex()
    name = name or cid[:12]
    hostname = hostname or cid[:12]
    security = security or Security()
    limits = replace(limits or Limits(), devices=security.device_rules())
    rec = ContainerRecord(
        id=cid,
        name=name,
        image=image.ref,
        image_id=image.id,
        layers=image.layers,
        command=command,
        env=merge_env([*(config.env or [DEFAULT_PATH]), f"HOSTNAME={hostname}"], overrides),
        cwd=cwd,
        hostname=hostname,
        mounts=mounts_,
        limits=limits,
        security=security,
        auto_remove=auto_remove,
        created=time.time(),
        user=user if user is not None else config.user or "",
        tty=tty,
        interactive=interactive,
        read_only=read_only,
        tmpfs=tmpfs_,
        init=init,
    )
    if claim:
        _claimed(rec)
    with store.lock():
        store.names.mkdir(exist_ok=True)
        try:
            os.symlink(cid, store.names / name)
        except FileExistsError:
            _remove_stale_names(store)  # a crash may have left the name of none
            try:
                os.symlink(cid, store.names / name)
            except FileExistsError:
                raise PyvmmError(f"container name {name} is already in use") from None
        try:
            store.containers.mkdir(exist_ok=True)
            cdir = _dir(store, cid)
            os.mkdir(cdir, 0o700)
            # The overlay's root takes the upper directory's mode: 0755, as the root of
            # every image, or a user other than root could not reach anything (the
            # container's directory, 0700, keeps the host's other users out).
            for sub, mode in (("upper", 0o755), ("work", 0o700), ("merged", 0o700)):
                os.mkdir(cdir / sub, mode)
                os.chmod(cdir / sub, mode)  # whatever the umask
            for m in mounts_:
                if m.type == "volume" and not (store.volumes / m.source).exists():
                    volumes.create(store, m.source)
                    rec.new_volumes.append(m.source)
                elif m.type == "volume":
                    volumes.create(store, m.source)  # refuses a broken one
            if net is not None:  # plugged in when it starts, unless it starts now
                network.connect(store, rec, *net, attach=claim)
            if init:
                bundle.install_init(store, rec)
            bundle.write(store, rec)
            _save(store, rec)
        except BaseException:
            _forget(store, rec)
            raise
    return rec


def check_workdir(path: str) -> str:
    """``-w``: an absolute path (Docker's rule), normalized."""
    if not path.startswith("/"):
        raise PyvmmError(f"the working directory {path!r} is invalid: it must be absolute")
    return posixpath.normpath(path).replace("//", "/")


def environment(env: tuple[str, ...], env_files: tuple[str, ...]) -> list[str]:
    """``--env-file`` lines, then ``-e`` values, as Docker reads them: ``NAME=VALUE``
    as it is, a bare ``NAME`` takes this process's value (left out where it has none);
    in a file, blank lines and ``#`` comments are skipped and leading space trimmed."""
    items = []
    for path in env_files:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise PyvmmError(f"--env-file {path}: {e.strerror}") from None
        items += [(f"--env-file {path}", line.lstrip()) for line in lines]
    items += [("-e", item) for item in env]
    result = []
    for where, item in items:
        if where != "-e" and (not item or item.startswith("#")):
            continue
        key, has_value, _ = item.partition("=")
        if not key:
            raise PyvmmError(f"{where}: {item!r}: no variable name")
        if any(c.isspace() for c in key):
            raise PyvmmError(f"{where}: variable {key!r} contains whitespace")
        if has_value:
            result.append(item)
        elif key in os.environ:
            result.append(f"{key}={os.environ[key]}")
    return result


def merge_env(base: list[str], overrides: list[str]) -> list[str]:
    """``base`` with each of ``overrides`` replacing the variable of its name, or
    appended (Docker's ReplaceOrAppendEnvValues)."""
    merged = {item.partition("=")[0]: item for item in base}
    for item in overrides:
        merged[item.partition("=")[0]] = item
    return list(merged.values())


def _forget(store: Store, rec: ContainerRecord) -> None:
    """Remove a container's files, name and the volumes it created; caller locks."""
    _remove_files(store, rec.id, rec.cgroup)
    for v in rec.new_volumes:
        if not users_of(store, volume=v):
            volumes.remove(store, v, [])


def _claimed(rec: ContainerRecord) -> None:
    rec.update(
        status="starting",
        monitor_pid=os.getpid(),
        monitor_start=process_start(os.getpid()),
        exit_code=None,
        error=None,
        cgroup=cgroups.host_version(),
    )


def _claim(store: Store, cid: str) -> ContainerRecord:
    """Mark the container as starting under this process, unless it already runs."""
    with store.lock():
        rec = _load(store, cid)
        rec = rec and reconcile(store, rec)
        if rec is None:
            raise PyvmmError(f"no such container: {cid[:12]}")
        if isinstance(rec, BrokenContainer):
            raise PyvmmError(f"container {cid[:12]} is broken ({rec.reason})")
        if rec.status in ACTIVE:
            raise PyvmmError(f"container {rec.name} is already running")
        if net := _networked(store, cid):
            net.plug(store, cid)  # a stopped one's address and ports, again
        _claimed(rec)
        _save(store, rec)
        return rec


def _monitor(store: Store, rec: ContainerRecord, attach: bool, on_started: Callable, t0: float,
             imports_s: float = 0.0, forward: bool = True) -> int:  # fmt: skip
    """Start the claimed container ``rec`` through the OCI core and supervise it to its
    end; return its exit status (``rec`` gains ``oom_killed``, ``peak_memory`` and
    ``timings``). Signals to this process are forwarded to the container, or with
    ``forward`` False end it and then this process (KeyboardInterrupt), once the
    container's end is recorded (``forwarding_signals``)."""
    cid, oci_root = rec.id, str(store.runtime)
    timings = {"imports_s": imports_s}

    def mark(step: str) -> None:
        timings[f"{step}_s"] = time.perf_counter() - t0

    mark("claimed")
    fds: list[int] = []
    console = stdio.ConsoleSocket() if rec.tty else None
    try:
        log_fd = os.open(_dir(store, cid) / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        fds.append(log_fd)
        stdin = 0 if attach and rec.interactive else os.open("/dev/null", os.O_RDONLY)
        if stdin:
            fds.append(stdin)
        if attach and not rec.tty:
            fds += os.pipe() + os.pipe()
            out_r, out_w, err_r, err_w = fds[-4:]
            streams, outputs = (stdin, out_w, err_w), {out_r: 1, err_r: 2}
            child_only = [out_w, err_w]
        else:  # detached, or a terminal: what the init writes before it opens one, logged
            streams, outputs, child_only = (stdin, log_fd, log_fd), {}, []
        child_only += [stdin] if stdin else []
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        fds += [report_r, report_w]
        extras = init.Extras(stdio=streams, on_rootfs=bundle.overlay(store, rec), pdeathsig=True,
                             exec_report=report_w)  # fmt: skip
        try:
            oci = runtime.create(oci_root, cid, bundle.ensure(store, rec), extras=extras,
                                 console_socket=console and console.path)  # fmt: skip
        except init.InitError as e:
            raise _start_error(e) from None
        if console is not None:
            master = console.receive()
            outputs = {master: 1 if attach else None}
        mark("created")
    except BaseException:
        for fd in fds:
            os.close(fd)
        _finish(store, rec, None, None)
        raise
    finally:
        if console is not None:
            console.close()
    for fd in [*child_only, report_w]:
        os.close(fd)
    pid = oci.state.pid
    report = os.fdopen(report_r, "rb")
    try:
        runtime.start(oci_root, cid)
        # Recorded while the init execs the command, not before: off its path. A full
        # disk does not stop the container (it may be what fills it): the record says
        # "starting" under this live monitor, which is as good until the exit.
        with store.lock(), contextlib.suppress(OSError):
            rec.update(status="running", pid=pid, pid_start=oci.state.pid_start,
                       started_at=time.time())  # fmt: skip
            if _load(store, cid) is not None:  # else removed with rm -f already
                _save(store, rec)  # (and a broken record repaired)
        failure = report.read().decode(errors="replace")  # EOF: the execve happened
        if failure:
            code, _, message = failure.partition("\n")
            raise ContainerStartError(message, int(code))
    except BaseException:
        for fd in [*outputs, log_fd]:
            os.close(fd)
        runtime.delete(oci_root, cid, force=True)
        runtime.wait_pid(pid)
        _finish(store, rec, None, None)
        raise
    finally:
        report.close()
    mark("exec")
    on_started(rec)
    try:
        with (
            runtime.forwarding_signals(pid, end=not forward) as caught,
            _terminal(rec, attach, outputs),
        ):
            inputs = {0: next(iter(outputs))} if rec.tty and rec.interactive and attach else {}
            stdio.relay(outputs, log_fd, inputs, lambda: mark("first_output"))
            code = runtime.wait(oci)
    finally:
        os.close(log_fd)
    cg = oci.cgroup()
    result = {"oom_killed": cg.oom_killed(), "peak_memory": cg.peak_memory(), "timings": timings}
    rec.update(**result)
    runtime.delete(oci_root, cid, force=True)
    try:
        _finish(store, rec, code, result)
    except OSError as e:  # a full disk, a read-only state root: the container stays
        _mark_unrecorded(store, rec, code, e)
        raise ExitNotRecorded(rec, code, e) from None
    if caught and not forward:
        raise KeyboardInterrupt
    return code


def _start_error(e: init.InitError) -> ContainerStartError:
    """The command's own fault (not found, not executable): Docker's 126 or 127."""
    return ContainerStartError(str(e), e.status if e.status in (126, 127) else 2)


def _terminal(rec: ContainerRecord, attach: bool, outputs: dict[int, int | None]):
    """The caller's terminal attached to the container's (``stdio.attached_terminal``)
    for an attached start of a ``-t`` container; else nothing to do."""
    if rec.tty and attach:
        return stdio.attached_terminal(next(iter(outputs)))
    return contextlib.nullcontext()


def _mark_unrecorded(store: Store, rec: ContainerRecord, code: int, error: OSError) -> None:
    """Record, if the disk allows it at all, that the exit could not be recorded:
    written over the record in the space it has (``records.write_in_place``)."""
    rec.update(status="exited", exit_code=code, pid=None, finished_at=time.time(),
               error=f"its exit could not be recorded: {error.strerror or error}")  # fmt: skip
    with contextlib.suppress(OSError), store.lock():
        if isinstance(_load(store, rec.id), ContainerRecord):
            records.write_in_place(_dir(store, rec.id) / RECORD, rec)


class ExitNotRecorded(PyvmmError):
    """The container ran and exited, but its record could not be updated as usual.
    It is kept, never removed for that: marked exited with the reason where the record
    could be overwritten in place, else as the disk has it (``running``, its monitor
    gone: ``reconcile`` records it as exited once the state root takes writes again)."""

    exit_code = 125  # Docker's: the error is the runtime's, not the container's

    def __init__(self, rec: ContainerRecord, code: int, error: OSError):
        super().__init__(
            f"container {rec.name} exited with status {code}, but its exit could not "
            f"be recorded ({error.strerror or error}); it is kept"
        )


def _finish(store: Store, rec: ContainerRecord, code: int | None, result: dict | None) -> None:
    """Record how the container ended (or that it never started); apply --rm.

    The record on disk is read again (a later ``start`` may have changed it); one that
    no longer loads is replaced by the monitor's own, repaired."""
    with store.lock():
        disk = _load(store, rec.id)
        if disk is None:
            return  # removed with rm -f while it ran
        if isinstance(disk, ContainerRecord):
            rec = disk
        rec.update(status="exited", exit_code=code, pid=None, finished_at=time.time())
        rec.update(**(result or {}))
        if rec.auto_remove and result is not None:
            _remove_files(store, rec.id, rec.cgroup)
            return
        _save(store, rec)  # first: the exit is recorded whatever the network does
        if net := _networked(store, rec.id):
            net.unplug(store, rec.id)  # a stopped container holds no address or port


def _start_detached(store: Store, cid: str) -> None:
    """Fork a daemon monitor for the container; return once its command has started."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(3, w)
                os.closerange(w + 1, 1 << 16)

                def started(_rec):
                    os.write(w, b"ok")
                    os.close(w)

                try:
                    _monitor(store, _claim(store, cid), False, started, time.perf_counter())
                except PyvmmError as e:
                    os.write(w, f"{e.exit_code}\n{e}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode(errors="replace")
    if answer != "ok":
        code, _, message = answer.partition("\n")
        raise ContainerStartError(message or "the container monitor died", int(code or 2))


def start(
    store: Store, ref: str, attach: bool, t0: float | None = None, forward: bool = True
) -> tuple[ContainerRecord, int | None]:
    """Start a created or exited container on its existing writable layer.

    Attached: supervise it here and return its record and exit status (``forward``:
    see ``_monitor``). Detached: return once it runs (status None), a daemon monitor
    supervising it.
    """
    rec = find_usable(store, ref)
    if not attach:
        _start_detached(store, rec.id)
        return rec, None
    rec = _claim(store, rec.id)
    return rec, _monitor(store, rec, True, lambda _rec: None, t0 or time.perf_counter(),
                         forward=forward)  # fmt: skip


def run(store: Store, image_ref: str | ImageRecord, command: list[str], *, detach: bool = False,
        t0: float | None = None, imports_s: float = 0.0,
        **options) -> tuple[ContainerRecord, int | None]:  # fmt: skip
    """``create`` and ``start``; a container whose command cannot start is removed again,
    with the volumes it created, so a failed ``run`` leaves nothing behind. One that
    started is never removed for an error (only by ``--rm``, once it has exited).

    ``t0`` is when the request came in; the record's ``timings`` count from it
    (``imports_s``, the caller's import time before ``t0``, is recorded beside them).
    """
    t0 = t0 or time.perf_counter()
    rec = create(store, image_ref, command, claim=not detach, **options)
    started = []
    try:
        if detach:
            _start_detached(store, rec.id)
            return rec, None
        return rec, _monitor(store, rec, True, started.append, t0, imports_s)
    except BaseException:
        if not started or rec.auto_remove:
            with store.lock():
                _forget(store, rec)
        raise


def exec_(store: Store, ref: str, command: list[str], *, env: tuple[str, ...] = (),
          env_files: tuple[str, ...] = (), workdir: str | None = None, user: str | None = None,
          tty: bool = False, interactive: bool = False, detach: bool = False) -> int:  # fmt: skip
    """Docker's ``exec``: run ``command`` in the running container through the OCI
    core's ``exec`` (its namespaces, cgroup, capabilities and seccomp filter, its
    environment with ``env`` over it, its user unless ``user``); return its exit status
    (0 at once with ``detach``). Attached, it gets this process's stdout and stderr
    (and stdin with ``interactive``), or with ``tty`` a terminal of its own."""
    rec = _running(store, ref)
    if is_paused(store, rec):
        raise PyvmmError(f"container {rec.name} is paused: unpause it first")
    if detach and tty:
        raise PyvmmError("exec: -d with -t is not supported (nothing would hold the terminal)")
    oci_root = str(store.runtime)
    runtime.seal_for_exec(oci_root, rec.id)  # (first: it may start this command again)
    process = runtime.exec_process(oci_root, rec.id, list(command), tty)
    process["env"] = merge_env(process.get("env", []), environment(env, env_files))
    if workdir is not None:
        process["cwd"] = check_workdir(workdir)
    if user:
        process["user"] = bundle.process_user(store, rec, user, process["env"])
    console = stdio.ConsoleSocket() if tty else None
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        streams = (null, null, null) if detach else (0 if interactive else null, 1, 2)
        try:
            pid = runtime.exec_start(oci_root, rec.id, process, stdio=streams,
                                     console_socket=console and console.path)  # fmt: skip
        except init.InitError as e:
            raise _start_error(e) from None
        master = console.receive() if console is not None else None
    finally:
        os.close(null)
        if console is not None:
            console.close()
    if detach:
        return 0

    def exited() -> bool:  # (not reaped: wait_pid does that)
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    with runtime.forwarding_signals(pid):
        if master is not None:
            with stdio.attached_terminal(master):
                stdio.relay({master: 1}, None, {0: master} if interactive else {},
                            until=exited)  # fmt: skip
        return runtime.wait_pid(pid)


def _signal(store: Store, rec: ContainerRecord, sig: int) -> bool:
    """Send ``sig`` to the container's PID 1 through the OCI core's ``kill``; False if
    it does not run."""
    try:
        runtime.kill(str(store.runtime), rec.id, sig)
    except runtime.ContainerStateError:
        return False
    if is_paused(store, rec):  # a frozen process takes its signal once thawed (Docker)
        # The signal may have ended it meanwhile, its cgroup with it: cgroup v2 lets
        # SIGKILL through to a frozen task, and a thawed one dies at once.
        with contextlib.suppress(runtime.ContainerStateError, FileNotFoundError):
            runtime.pause(str(store.runtime), rec.id, False)
    return True


def kill(store: Store, ref: str, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the container's PID 1; if that ends it, wait until its exit is
    recorded, so that a following ``ps`` or ``inspect`` shows it."""
    rec = find_usable(store, ref)
    if rec.status != "running" or not _signal(store, rec, sig):
        raise PyvmmError(f"container {rec.name} is not running")
    if wait_dead(rec.pid, rec.pid_start, 1.0):
        wait_dead(rec.monitor_pid, rec.monitor_start, 5.0)


def stop(store: Store, ref: str, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; return once it has exited.

    A PID 1 that installed no SIGTERM handler ignores SIGTERM (the kernel protects a
    namespace's init), as in Docker; then the SIGKILL ends it.
    """
    rec = find_usable(store, ref)
    if rec.status == "running":
        with_pid = (rec.pid, rec.pid_start)
        if _signal(store, rec, signal.SIGTERM) and not wait_dead(*with_pid, timeout):
            _signal(store, rec, signal.SIGKILL)
        wait_dead(*with_pid, 5.0)
        wait_dead(rec.monitor_pid, rec.monitor_start, 5.0)


def remove(store: Store, ref: str, force: bool = False) -> None:
    """Delete the container and its writable layer (volumes stay).

    A broken container goes with ``force`` only (whether it still runs is unknown):
    its cgroup (and whatever still runs in it), any mount under its directory, its
    directory and its name."""
    rec = find(store, ref)
    if isinstance(rec, BrokenContainer):
        if not force:
            raise PyvmmError(f"container {rec.id[:12]} is broken ({rec.reason}): use rm -f")
        with store.lock():
            _remove_files(store, rec.id)
        return
    if rec.status in ACTIVE:
        if not force:
            raise PyvmmError(f"container {rec.name} is running: stop it first or use -f")
        _signal(store, rec, signal.SIGKILL)
        wait_dead(rec.monitor_pid, rec.monitor_start, 5.0)
    with store.lock():
        if _load(store, rec.id):
            _remove_files(store, rec.id, rec.cgroup)


def _cgroup(store: Store, rec: ContainerRecord) -> cgroups.Cgroup:
    return cgroups.for_container(rec.id, rec.cgroup, store.cgroup_parent, oci=True)


def _running(store: Store, ref: str) -> ContainerRecord:
    rec = find_usable(store, ref)
    if rec.status != "running":
        raise PyvmmError(f"container {rec.name} is not running")
    return rec


def is_paused(store: Store, rec: ContainerRecord) -> bool:
    return rec.status == "running" and _cgroup(store, rec).frozen()


def pause(store: Store, ref: str, frozen: bool = True) -> None:
    """Freeze (or thaw) every process of the container: the OCI core's ``pause`` and
    ``resume``, its cgroup's freezer."""
    rec = _running(store, ref)
    if is_paused(store, rec) == frozen:
        raise PyvmmError(f"container {rec.name} is {'already' if frozen else 'not'} paused")
    runtime.pause(str(store.runtime), rec.id, frozen)


def wait(store: Store, ref: str) -> int | None:
    """Block until the container has exited (a created one: until it has run); its
    exit status, None if unknown (its monitor died)."""
    rec = find_usable(store, ref)
    while rec.status != "exited":
        if rec.status in ACTIVE:
            wait_dead(rec.monitor_pid, rec.monitor_start, 1.0)
        else:
            time.sleep(0.1)
        try:
            rec = find_usable(store, rec.id)
        except PyvmmError:
            if rec.auto_remove:
                raise PyvmmError(f"container {rec.name} exited and was removed (--rm)") from None
            raise
    return rec.exit_code


def rename(store: Store, ref: str, new: str) -> None:
    """Docker's ``rename``: the container's name, its bundle's annotation, and the name
    its network peers know it by."""
    check_name("container", new)
    rec = find_usable(store, ref)
    with store.lock():
        _remove_stale_names(store)
        rec = _load(store, rec.id)
        if not isinstance(rec, ContainerRecord):
            raise PyvmmError(f"no such container: {ref}")
        if rec.name == new:
            raise PyvmmError(f"container {new} is already named {new}")
        if os.path.lexists(store.names / new):
            raise PyvmmError(f"container name {new} is already in use")
        old = rec.name
        rec.name = new
        bundle.write(store, rec)  # (what can fail goes first: nothing is changed yet)
        os.symlink(rec.id, store.names / new)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store.names / old)
        _save(store, rec)
        if net := _networked(store, rec.id):
            net.rename(store, rec.id, new)


def top(store: Store, ref: str) -> list[list[str]]:
    """The running container's processes (``observe.TOP_COLUMNS``), from its cgroup."""
    from vmm.container.engine import observe

    return observe.top(_cgroup(store, _running(store, ref)))


def running_cgroups(store: Store, refs: list[str]) -> list[tuple[ContainerRecord, cgroups.Cgroup]]:
    """The containers ``refs`` (every running one if none) and their cgroups, for ``stats``."""
    if refs:
        recs = [_running(store, ref) for ref in refs]
    else:
        recs = [r for r in records.loaded(list_containers(store)) if r.status == "running"]
    return [(rec, _cgroup(store, rec)) for rec in recs]


def copy(store: Store, source: str, dest: str) -> None:
    """Docker's ``cp``: one of ``source`` and ``dest`` is CONTAINER:PATH, the other a
    host path (``copy.py``). A running container is reached through its own root
    (/proc/PID/root); a stopped one's overlay is mounted in a child's private mount
    namespace, under the state lock so that it cannot start meanwhile."""
    from vmm.container.engine import copy as cp
    from vmm.container.linux import namespaces

    (src_name, src_path), (dst_name, dst_path) = cp.split(source), cp.split(dest)
    if (src_name is None) == (dst_name is None):
        raise PyvmmError("cp: exactly one of SOURCE and DEST must be CONTAINER:PATH")
    rec = find_usable(store, src_name or dst_name)
    host = Path(os.path.abspath(dst_path if src_name else src_path))

    def action(root_fd: int) -> None:
        if src_name:
            cp.copy_out(root_fd, src_path, host)
        else:
            cp.copy_in(root_fd, host, dst_path)

    if rec.status == "running":
        root = os.open(f"/proc/{rec.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if not is_alive(rec.pid, rec.pid_start):  # (the pid could be another's now)
                raise PyvmmError(f"container {rec.name} stopped during cp")
            action(root)
        finally:
            os.close(root)
        return

    def in_private_namespace() -> None:
        namespaces.unshare(lib.CLONE_NEWNS)
        mount(None, "/", None, lib.MS_REC | lib.MS_PRIVATE)
        merged = str(_dir(store, rec.id) / "merged")
        bundle.mount_image(store, rec, merged)
        action(os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))

    with store.lock():
        now = _load(store, rec.id)
        if not isinstance(now, ContainerRecord) or now.status in ACTIVE:
            raise PyvmmError(f"container {rec.name} changed during cp: try again")
        cp.in_child(in_private_namespace)


def inspect(store: Store, ref: str) -> dict:
    """The container's record, for people: a custom seccomp profile by its path only,
    and, while it runs, the capabilities its first process really has (CapEff); its
    network, if it has one of pyvmm's. A broken one's is its id and why it is broken."""
    rec = find(store, ref)
    if isinstance(rec, BrokenContainer):
        return {"id": rec.id, "status": "broken", "error": rec.reason}
    record = rec.to_json()
    security = record["security"]
    security.pop("seccomp_profile", None)
    if rec.status == "running" and is_alive(rec.pid, rec.pid_start):
        record["paused"] = is_paused(store, rec)
        with contextlib.suppress(OSError, StopIteration), open(f"/proc/{rec.pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
            security["running_capabilities"] = capabilities.decode(mask)
    if net := _networked(store, rec.id):  # --network: its mode, address, ports
        record["network"] = net.describe(store, rec.id)
    return record


def logs(store: Store, ref: str) -> bytes:
    rec = find_usable(store, ref)
    try:
        return (_dir(store, rec.id) / "log").read_bytes()
    except FileNotFoundError:
        return b""


def diff(store: Store, ref: str) -> list[tuple[str, str]]:
    rec = find_usable(store, ref)
    lowers = [layers.layer_dir(store, d) for d in reversed(rec.layers)]
    return layers.diff(_dir(store, rec.id) / "upper", lowers)
