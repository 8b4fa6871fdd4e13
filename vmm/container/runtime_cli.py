"""``pyvmm-runtime``: runc's command line over the OCI core (``runtime.py``).

Engines (Podman's conmon, containerd's shim) call one executable for every step of a
container's life, so start-up is paid on each: this module imports argparse and the
core only, and each verb imports what it alone needs. Errors are one line on stderr
(and a JSON record in ``--log`` with ``--log-format json``, where containerd looks
for them), exit status 1, as runc.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vmm.errors import PyvmmError

VERSION = "1.1.0"  # the runtime-spec version `features` and `--version` report
DEFAULT_ROOT = "/run/pyvmm-runtime"  # runc's is /run/runc


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # runc: a usage error is one line and status 1
        verb = self.prog.removeprefix("pyvmm-runtime").strip()
        raise PyvmmError(f"{verb}: {message}" if verb else message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pyvmm-runtime", description="An OCI runtime (runc's command line).")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", help="log file (errors), default stderr only")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    def cmd(name: str, help_: str, id_: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        if id_:
            c.add_argument("id")
        return c

    def creating(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file")
        c.add_argument("--console-socket")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)

    creating(cmd("create", "create a container from a bundle"))
    cmd("start", "run the created container's process")
    c = cmd("run", "create and start a container")
    creating(c)
    c.add_argument("-d", "--detach", action="store_true")
    cmd("state", "print the container's state as JSON")
    c = cmd("kill", "send a signal to the container's init")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c.add_argument("-a", "--all", action="store_true")
    c = cmd("delete", "remove a stopped container")
    c.add_argument("-f", "--force", action="store_true")
    c = cmd("exec", "run another process in the container")
    c.add_argument("-p", "--process")
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("--console-socket")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--pid-file")
    c.add_argument("--cwd")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-u", "--user")
    c.add_argument("--additional-gids", "-g", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    c = cmd("list", "list containers", id_=False)
    c.add_argument("-f", "--format", choices=("table", "json"), default="table")
    c.add_argument("-q", "--quiet", action="store_true")
    c = cmd("ps", "list the container's processes")
    c.add_argument("-f", "--format", choices=("table", "json"), default="table")
    cmd("pause", "freeze every process of the container")
    cmd("resume", "thaw a paused container")
    c = cmd("update", "change a running container's resources")
    c.add_argument("-r", "--resources", help="linux.resources JSON file, - for stdin")
    c.add_argument("--memory")
    c.add_argument("--pids-limit", type=int)
    c.add_argument("--cpu-quota", type=int)
    c.add_argument("--cpu-period", type=int)
    cmd("features", "what this runtime supports, as JSON", id_=False)
    c = cmd("spec", "write a default config.json", id_=False)
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = _parser().parse_args(argv)
        if args.version:
            print(f"pyvmm-runtime version 0.1.0\nspec: {VERSION}")
            return 0
        if args.systemd_cgroup:
            raise PyvmmError("--systemd-cgroup is not supported: use cgroupfs paths")
        if args.debug and args.log:
            _log(args, "debug", "pyvmm-runtime " + " ".join(argv or sys.argv[1:]))
        if args.command is None:
            raise PyvmmError("pyvmm-runtime: a command is required (see --help)")
        return COMMANDS[args.command](args) or 0
    except PyvmmError as e:
        _error(args, str(e))
    except OSError as e:
        _error(args, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    return 1


def _error(args, message: str) -> None:
    sys.stderr.write(f"pyvmm-runtime: {message}\n")
    if getattr(args, "log", None):
        _log(args, "error", message)


def _log(args, level: str, message: str) -> None:
    """One record in ``--log``: runc's JSON (containerd's shim reads the last error
    from it) or a line of text."""
    with open(args.log, "a") as f:
        if args.log_format == "json":
            t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            f.write(json.dumps({"level": level, "msg": message, "time": t}) + "\n")
        else:
            f.write(f"{level}: {message}\n")


def _create(args) -> int:
    from vmm.container import runtime

    runtime.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
                   console_socket=args.console_socket, no_pivot=args.no_pivot,
                   preserve_fds=args.preserve_fds)  # fmt: skip
    return 0


def _start(args) -> int:
    from vmm.container import runtime

    runtime.start(args.root, args.id)
    return 0


def _run(args) -> int:
    """create and start; attached: wait for the init, forward signals, delete."""
    import signal

    from vmm.container import runtime

    c = runtime.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
                       console_socket=args.console_socket, no_pivot=args.no_pivot,
                       preserve_fds=args.preserve_fds, subreaper=not args.detach)  # fmt: skip
    try:
        runtime.start(args.root, args.id)
    except BaseException:
        runtime.delete(args.root, args.id, force=True)
        raise
    if args.detach:
        return 0
    pid = c.state.pid
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2):  # fmt: skip
        signal.signal(s, lambda sig, _f: os.kill(pid, sig))
    code = runtime.wait(c)
    runtime.delete(args.root, args.id, force=True)
    return code


def _state(args) -> int:
    from vmm.container import runtime

    print(json.dumps(runtime.load(args.root, args.id).oci_state(), indent=2))
    return 0


def _kill(args) -> int:
    from vmm.container import runtime

    runtime.kill(args.root, args.id, runtime.parse_signal(args.signal), args.all)
    return 0


def _delete(args) -> int:
    from vmm.container import runtime

    runtime.delete(args.root, args.id, args.force)
    return 0


def _exec(args) -> int:
    """The process from --process, or the container's own with the command, flags and
    environment given here (runc's rules)."""
    from vmm.container import runtime, spec

    runtime.seal_for_exec(args.root, args.id)
    if args.process:
        try:
            with open(args.process) as f:
                process = json.load(f)
        except ValueError as e:
            raise PyvmmError(f"--process {args.process}: not valid JSON: {e}") from None
    else:
        if not args.argv:
            raise PyvmmError("exec: a command (or --process) is required")
        c = runtime.load(args.root, args.id)
        process = dict(spec.load(c.state.bundle).raw.get("process") or {})
        process["args"] = args.argv
        process["terminal"] = args.tty
        process["env"] = [*process.get("env", []), *args.env]
        if args.cwd:
            process["cwd"] = args.cwd
        if args.user:
            uid, _, gid = args.user.partition(":")
            process["user"] = {
                "uid": int(uid),
                "gid": int(gid or 0),
                "additionalGids": [int(g) for g in args.additional_gids],
            }
        if args.no_new_privs:
            process["noNewPrivileges"] = True
    return runtime.exec_(args.root, args.id, process, console_socket=args.console_socket,
                         preserve_fds=args.preserve_fds, pid_file=args.pid_file,
                         detach=args.detach)  # fmt: skip


def _list(args) -> int:
    from vmm.container import runtime

    containers = runtime.list_all(args.root)
    if args.quiet:
        for c in containers:
            print(c.state.id)
        return 0
    rows = [c.oci_state() for c in containers]
    if args.format == "json":
        print(json.dumps(rows))
        return 0
    table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    table += [[r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], "root"]
              for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    for row in table:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _ps(args) -> int:
    from vmm.container import runtime

    c = runtime.load(args.root, args.id)
    pids = c.cgroup().pids()
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    print("PID   CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        print(f"{pid:<5} {cmd}")
    return 0


def _pause(args) -> int:
    from vmm.container import runtime

    runtime.pause(args.root, args.id, True)
    return 0


def _resume(args) -> int:
    from vmm.container import runtime

    runtime.pause(args.root, args.id, False)
    return 0


def _update(args) -> int:
    from vmm.container import runtime

    if args.resources:
        text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
        try:
            resources = json.loads(text)
        except ValueError as e:
            raise PyvmmError(f"--resources: not valid JSON: {e}") from None
    else:
        resources = {}
    if args.memory:
        from vmm.container.cli import parse_size

        resources.setdefault("memory", {})["limit"] = parse_size(args.memory)
    if args.pids_limit is not None:
        resources.setdefault("pids", {})["limit"] = args.pids_limit
    if args.cpu_quota is not None:
        resources.setdefault("cpu", {})["quota"] = args.cpu_quota
    if args.cpu_period is not None:
        resources.setdefault("cpu", {})["period"] = args.cpu_period
    runtime.update(args.root, args.id, resources)
    return 0


def _features(args) -> int:
    from vmm.container import capabilities, mounts, spec

    print(json.dumps({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": VERSION,
        "hooks": list(spec.HOOK_POINTS),
        "mountOptions": sorted([*mounts.FLAGS, *mounts.PROPAGATION]),
        "linux": {
            "namespaces": list(spec.NAMESPACES),
            "capabilities": capabilities.supported(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "pyvmm"},
    }, indent=2))  # fmt: skip
    return 0


def _spec(args) -> int:
    from vmm.container import spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise PyvmmError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(spec.default(args.rootless), f, indent=2)
        f.write("\n")
    return 0


COMMANDS = {
    "create": _create,
    "start": _start,
    "run": _run,
    "state": _state,
    "kill": _kill,
    "delete": _delete,
    "exec": _exec,
    "list": _list,
    "ps": _ps,
    "pause": _pause,
    "resume": _resume,
    "update": _update,
    "features": _features,
    "spec": _spec,
}


def entry() -> None:
    sys.exit(main())
