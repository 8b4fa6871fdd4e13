"""The OCI core: create, start, run, kill, delete and state a container from a bundle.

Everything an engine asks of a runtime (runtime-spec runtime.md "Operations") lives
here, over the Linux pieces (``namespaces``, ``mounts``, ``cgroups``,
``capabilities``); ``vmm/cli/runtime.py`` is runc's command line over it, and
``pyvmm container`` builds a bundle and comes here too.

A container's life, as the spec's state machine (``creating`` → ``created`` →
``running`` → ``stopped``):

1. ``create`` checks the whole ``config.json`` (``spec.py``), makes the cgroup and
   forks the container's init (``init.py``), which builds the namespaces, mounts and
   root; the runtime runs the ``prestart``/``createRuntime`` hooks, the init the
   ``createContainer`` ones, resolves the command and then blocks opening
   ``exec.fifo`` for writing. ``create`` records the state and returns: the init is
   now the engine's child (conmon and containerd's shim are subreapers).
2. ``start`` opens the fifo for reading: the init wakes, runs ``startContainer``
   hooks, drops privileges and execs the command; ``start`` runs ``poststart``.
3. The status is never stored, always observed: no init process means ``stopped``,
   the fifo still there ``created``, a frozen cgroup ``paused``, else ``running``.
4. ``delete`` removes the cgroup (killing what is left) and the state directory,
   then runs ``poststop``.

State lives in ``<root>/<id>/`` (``--root``, by default ``/run/pyvmm-runtime``):
``state.json`` (``State``) and ``exec.fifo``; ``statedir.py`` holds the id rule, light
enough to check before this module is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vmm import record
from vmm.container.linux import atomic
from vmm.container.oci.hooks import Hook
from vmm.container.oci.statedir import ContainerStateError, check_id
from vmm.proc import is_alive, process_start, wait_dead

if TYPE_CHECKING:
    from vmm.container.linux import cgroups

CGROUP_PARENT = "pyvmm-runtime"  # a container without linux.cgroupsPath goes here


@dataclass
class State:
    """One container's ``<root>/<id>/state.json``: the OCI ``state`` (runtime.md
    "State") and pyvmm's own fields. A typed record, read through the one loader
    (``vmm/record.py``) and replaced atomically (``atomic.py``), as the store's records
    are, without the store, which is above this core: a damaged file is refused by the
    field's name, never a crash."""

    id: str
    oci_version: str
    bundle: str
    pid: int
    pid_start: int | None  # with pid, names the init process for good
    rootfs: str
    created: str  # RFC 3339, as runc reports it
    cgroup_parent: str
    cgroup_name: str
    cgroup_version: str
    annotations: dict[str, str] = field(default_factory=dict)
    hooks: dict[str, list[Hook]] = field(default_factory=dict)  # poststart, poststop: later
    userns: bool = False
    status: str = "created"  # observed, see ``Container.status``; stored for readers

    def oci(self, status: str) -> dict:
        """The state JSON the spec defines (plus runc's rootfs and created)."""
        return {
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
            "owner": "",
        }


class Container:
    """A container in the state directory: its record and what it is doing now."""

    def __init__(self, root: Path, state: State):
        self.root, self.state = root, state

    @property
    def dir(self) -> Path:
        return self.root / self.state.id

    @property
    def fifo(self) -> Path:
        return self.dir / "exec.fifo"

    def cgroup(self) -> cgroups.Cgroup:
        # Imported here: ``state`` of a container that is created or stopped never
        # looks at its cgroup, and pyvmm-runtime pays every import on every call.
        from vmm.container.linux import cgroups

        s = self.state
        return cgroups.for_container(s.cgroup_name, s.cgroup_version, s.cgroup_parent, oci=True)

    def alive(self) -> bool:
        return is_alive(self.state.pid, self.state.pid_start)

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if self.fifo.exists():
            return "created"
        if self.cgroup().frozen():
            return "paused"
        return "running"

    def oci_state(self) -> dict:
        return self.state.oci(self.status())


def _root(root: str) -> Path:
    return Path(root).absolute()


def load(root: str, cid: str) -> Container:
    check_id(cid)
    if not (_root(root) / cid).is_dir():
        raise ContainerStateError(f"container {cid} does not exist")
    state = record.load(_root(root) / cid / "state.json", State, id=cid)
    if isinstance(state, record.Broken):
        raise ContainerStateError(f"container {cid}: {state.reason}")
    return Container(_root(root), state)


def list_all(root: str) -> list[Container]:
    base = _root(root)
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(os.listdir(base)):
        with contextlib.suppress(ContainerStateError):
            found.append(load(root, entry))
    return found


def _cgroup_for(cgroups_path: str | None, cid: str) -> tuple[str, str]:
    """(parent, name) of the container's cgroup: ``linux.cgroupsPath`` taken relative
    to the hierarchy's root (as runc does for an absolute one), else pyvmm-runtime/ID."""
    path = (cgroups_path or "").strip("/")
    if not path:
        return CGROUP_PARENT, cid
    parent, _, name = path.rpartition("/")
    return parent, name


def create(root: str, cid: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           preserve_fds: int = 0, subreaper: bool = False, extras=None) -> Container:  # fmt: skip
    """Create the container ``cid`` from ``bundle``; return once it is ``created``.

    Every check that can fail runs before anything exists; a later failure removes
    what was made (cgroup, state directory, the init process) before raising.
    ``extras`` (``init.Extras``) are an engine's additions to the init.
    """
    from vmm.container.linux import cgroups
    from vmm.container.oci import hooks, init
    from vmm.container.oci import spec as spec_mod
    from vmm.container.oci.spec import SpecError

    check_id(cid)
    spec = spec_mod.load(bundle)
    if spec.process is None:
        raise SpecError("config.json: process is required to create a container")
    if not spec.namespace("mount"):
        raise SpecError("config.json: pyvmm needs a mount namespace (linux.namespaces)")
    if spec.process.terminal and console_socket is None:
        raise SpecError("config.json: process.terminal needs --console-socket")
    limits = spec_mod.limits(spec.resources, spec.devices)
    init.validate(spec)
    _seal_if_ptrace_reaches(spec, joining=False)
    base = _root(root)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    cdir = base / cid
    try:
        os.mkdir(cdir, 0o700)
    except FileExistsError:
        raise ContainerStateError(f"container with id {cid} already exists") from None
    parent, name = _cgroup_for(spec.cgroups_path, cid)
    state = State(
        id=cid, bundle=spec.bundle, pid=0, pid_start=None, rootfs=spec.root,
        created=_now(), cgroup_parent=parent, cgroup_name=name,
        cgroup_version=cgroups.host_version(), annotations=spec.annotations,
        oci_version=spec.oci_version,
        hooks={k: v for k, v in spec.hooks.items() if k in ("poststart", "poststop")},
        userns=spec.namespace("user") is not None,
    )  # fmt: skip
    container = Container(base, state)
    cg = container.cgroup()
    pid = None
    try:
        os.mkfifo(container.fifo)
        os.chmod(container.fifo, 0o622)  # the init writes to it, maybe as a mapped uid
        cg.create(limits)

        def run_hooks(points: tuple[str, ...], pid_: int) -> None:
            state.pid = pid_
            for point in points:
                # runtime.md says "creating"; runc, and the conformance suite, say "created".
                hooks.run(spec.hooks.get(point, []), state.oci("created"), point)

        pid = init.spawn(cid, spec, cg, str(container.fifo), run_hooks,
                         console_socket=console_socket, no_pivot=no_pivot,
                         preserve_fds=preserve_fds, subreaper=subreaper, extras=extras)  # fmt: skip
        state.pid, state.pid_start = pid, process_start(pid)
        atomic.write_json(cdir / "state.json", record.to_json(state))
        if pid_file:
            _write_pid_file(pid_file, pid)
    except BaseException:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cg.remove()
        _remove_dir(cdir)
        raise
    return container


def _seal_if_ptrace_reaches(spec, joining: bool) -> None:
    """Run from a sealed copy of the interpreter (``exeseal.py``) if a process that
    may hold CAP_SYS_PTRACE in the host's user namespace shares the PID namespace
    pyvmm's processes enter: on ``create``, one already in a PID namespace joined by
    path (or the host's), whose capabilities pyvmm cannot know (a new one holds
    nobody before the init's execve); on ``exec`` (``joining``), the container's own."""
    from vmm.container.linux import exeseal

    pid_ns, caps = spec.namespace("pid"), spec.process.capabilities
    shared = pid_ns is None or pid_ns.path is not None
    sets = None if caps is None else list(caps.values())
    if shared or joining and exeseal.ptrace_reaches(sets, spec.namespace("user") is not None):
        exeseal.reexec_sealed()


def seal_for_exec(root: str, cid: str) -> None:
    """``exec``'s first step, before anything is read that could not be read twice
    (a ``--process`` pipe): run from a sealed copy if ``_seal_if_ptrace_reaches``."""
    from vmm.container.oci import spec as spec_mod

    _seal_if_ptrace_reaches(spec_mod.load(load(root, cid).state.bundle), joining=True)


def _remove_dir(path: Path) -> None:
    from vmm.container.linux.fdtree import remove_tree  # only create's failure and delete

    remove_tree(path)


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: an engine may be polling for it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def start(root: str, cid: str) -> Container:
    """Let a ``created`` container's init exec the command; then run ``poststart``."""
    c = load(root, cid)
    status = c.status()
    if status != "created":
        raise ContainerStateError(f"cannot start a container that is {status}")
    try:
        fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerStateError("cannot start an already running container") from None
    try:
        # The init's blocked open(O_WRONLY) returns now; it writes one byte and execs.
        deadline = time.monotonic() + 10
        while not (_readable(fd) and os.read(fd, 1)):
            if not c.alive():
                raise ContainerStateError(f"container {cid} died before it started")
            if time.monotonic() > deadline:
                raise ContainerStateError(f"container {cid} did not start")
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(c.fifo)
    if c.state.hooks.get("poststart"):
        from vmm.container.oci import hooks

        hooks.run_warning(c.state.hooks["poststart"], c.oci_state(), "poststart")
    return c


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0.05)[0])


SIGNALS = {s.name.removeprefix("SIG"): s.value for s in signal.Signals}


def parse_signal(text: str) -> int:
    """runc's rules: a number, or a name with or without SIG, any case."""
    if text.isdigit():
        return int(text)
    number = SIGNALS.get(text.upper().removeprefix("SIG"))
    if number is None:
        raise ContainerStateError(f"unknown signal {text!r}")
    return number


def kill(root: str, cid: str, sig: int = signal.SIGTERM, all_: bool = False) -> None:
    """Send ``sig`` to the init (``all_``: every process in the container's cgroup)."""
    c = load(root, cid)
    if c.status() == "stopped":
        raise ContainerStateError("container not running")
    targets = c.cgroup().pids() if all_ else [c.state.pid]
    for pid in targets or [c.state.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def delete(root: str, cid: str, force: bool = False) -> None:
    """Remove a ``stopped`` (or ``created``) container; ``force`` kills a running one.

    runtime.md: delete of a container that is not stopped is an error, and the
    ``poststop`` hooks run after the resources are gone.
    """
    try:
        c = load(root, cid)
    except ContainerStateError:
        if not force:
            raise
        # runc: delete --force of a missing container succeeds; an unreadable state
        # is removed (its cgroup and init, if any, are unknown: nothing names them); an
        # invalid id names no directory.
        with contextlib.suppress(ContainerStateError, FileNotFoundError):
            _remove_dir(_root(root) / check_id(cid))
        return
    status = c.status()
    if status in ("running", "paused") and not force:
        raise ContainerStateError(f"cannot delete container {cid} that is not stopped: {status}")
    if status != "stopped":
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.state.pid, signal.SIGKILL)
    cg = c.cgroup()
    cg.remove()
    wait_dead(c.state.pid, c.state.pid_start, 5.0)
    state = c.state.oci("stopped")
    with contextlib.suppress(FileNotFoundError):  # a concurrent delete (an engine's
        _remove_dir(c.dir)  # monitor and its ``rm -f``) removed it first
    if c.state.hooks.get("poststop"):
        from vmm.container.oci import hooks

        hooks.run_warning(c.state.hooks["poststop"], state, "poststop")


def pause(root: str, cid: str, frozen: bool) -> None:
    c = load(root, cid)
    status = c.status()
    if frozen and status != "running":
        raise ContainerStateError(f"container {cid} is not running")
    if not frozen and status != "paused":
        raise ContainerStateError(f"container {cid} is not paused")
    c.cgroup().freeze(frozen)


def update(root: str, cid: str, resources: dict) -> None:
    """Change the limits of a live container (``linux.resources`` as JSON)."""
    from vmm.container.oci import spec as spec_mod

    c = load(root, cid)
    if c.status() == "stopped":
        raise ContainerStateError("container not running")
    c.cgroup().update(spec_mod.limits(resources))


# What an attached front end (``run`` without ``-d``, ``pyvmm container run``) passes
# on to the container's init, as runc's and Docker's signal proxies do.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)  # fmt: skip


@contextlib.contextmanager
def forwarding_signals(pid: int, end: bool = False) -> Iterator[list[int]]:
    """While inside, the signals in ``FORWARDED`` go to ``pid`` instead of this process.

    With ``end``, they end ``pid`` instead (SIGKILL), and the list yielded says which
    came: Ctrl-C on ``docker build`` cancels the step, where on ``docker run`` the
    container's command is handed the signal, and may well ignore it as a PID 1."""
    caught: list[int] = []

    def handler(sig: int, _frame) -> None:
        caught.append(sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if end else sig)

    previous = {s: signal.signal(s, handler) for s in FORWARDED}
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def wait(c: Container) -> int:
    """Reap the init (a child of this process or of its subreaper) and return its
    exit status as a shell reports it."""
    return wait_pid(c.state.pid)


def wait_pid(pid: int) -> int:
    """Reap the child ``pid``; its exit status as a shell (and Docker) reports it:
    the code it exited with, or 128 + the signal that killed it."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def exec_process(root: str, cid: str, args: list[str], terminal: bool = False) -> dict:
    """What ``exec`` runs by default (runc's rules): the container's own ``process``
    from its bundle, with ``args``, ``terminal`` and no umask (the caller's stays)."""
    from vmm.container.oci import spec as spec_mod

    process = dict(spec_mod.load(load(root, cid).state.bundle).raw.get("process") or {})
    process.update(args=args, terminal=terminal, user=dict(process.get("user") or {}))
    process["user"].pop("umask", None)
    return process


def exec_(root: str, cid: str, process_json: dict, *, console_socket: str | None = None,
          preserve_fds: int = 0, pid_file: str | None = None,
          detach: bool = False) -> int:  # fmt: skip
    """Run another process in the running container ``cid`` (``process_json``: an
    OCI ``process`` object); return its exit status (the signals an attached runtime
    forwards go to it meanwhile), or 0 once it runs (``detach``)."""
    pid = exec_start(root, cid, process_json, console_socket=console_socket,
                     preserve_fds=preserve_fds, pid_file=pid_file)  # fmt: skip
    if detach:
        return 0
    with forwarding_signals(pid):
        return wait_pid(pid)


def exec_start(root: str, cid: str, process_json: dict, *, console_socket: str | None = None,
               preserve_fds: int = 0, pid_file: str | None = None,
               stdio: tuple[int, int, int] | None = None) -> int:  # fmt: skip
    """``exec``'s first half: start the process and return its pid, this process its
    subreaper (to ``wait_pid`` for). ``stdio``: its stdin, stdout and stderr (default:
    this process's own)."""
    from vmm.container.oci import init
    from vmm.container.oci import spec as spec_mod
    from vmm.container.oci.spec import SpecError

    c = load(root, cid)
    if c.status() not in ("running", "created"):
        raise ContainerStateError(f"cannot exec in a container that is {c.status()}")
    if process_json.get("terminal") and console_socket is None:
        raise SpecError("process.terminal needs --console-socket")
    process = spec_mod.parse_process(spec_mod.Fields(process_json, "process"))
    bundle_spec = spec_mod.load(c.state.bundle)
    _seal_if_ptrace_reaches(bundle_spec, joining=True)  # (a no-op after seal_for_exec)
    pid = init.join(c.state, process, console_socket=console_socket, preserve_fds=preserve_fds,
                    seccomp_profile=bundle_spec.seccomp, stdio=stdio)  # fmt: skip
    if pid_file:
        _write_pid_file(pid_file, pid)
    return pid
