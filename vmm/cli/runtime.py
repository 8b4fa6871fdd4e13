"""``pyvmm-runtime``: runc's command line over the OCI core (``runtime.py``).

Engines (Podman's conmon, containerd's shim) call one executable for every step of a
container's life, so start-up is paid on each (docs/bench.md, "Start-up budget": at
most twice ``python -c pass`` for ``--version`` and ``state``). So runc's command line
is the tables below, parsed by ``flags.py`` rather than argparse, and each verb imports
what it alone needs, json included; the process ends without Python's teardown
(``finish.py``). Errors are one line on stderr (and a JSON record in ``--log`` with
``--log-format json``, where containerd looks for them), exit status 1, as runc.
"""

from __future__ import annotations

import os
import sys

from vmm.cli.flags import Args, help_lines, parse_flags, set_arguments
from vmm.errors import PyvmmError

DEFAULT_ROOT = "/run/pyvmm-runtime"  # runc's is /run/runc

# The flags and verbs (vmm/cli/flags.py says what each field means), runc's.
GLOBAL_FLAGS = (
    ("--root", "root", str, DEFAULT_ROOT, "state directory"),
    ("--log", "log", str, None, "log file (errors), default stderr only"),
    ("--log-format", "log_format", ("text", "json"), "text", "text or json"),
    ("--debug", "debug", bool, False, "log the command line too"),
    ("--systemd-cgroup", "systemd_cgroup", bool, False, "refused: cgroupfs paths only"),
    ("--rootless", "rootless", str, "auto", "accepted, ignored"),
    ("--criu", "criu", str, None, None),
    ("-v --version", "version", bool, False, "print the version"),
    ("-h --help", "help", bool, False, "print this help"),
)
_HELP = ("-h --help", "help", bool, False, "print this help")
_CREATING = (
    ("-b --bundle", "bundle", str, ".", "the bundle directory"),
    ("--pid-file", "pid_file", str, None, "write the init's pid here"),
    ("--console-socket", "console_socket", str, None, "send the terminal's fd here"),
    ("--no-pivot", "no_pivot", bool, False, "move the root instead of pivot_root"),
    ("--no-new-keyring", "no_new_keyring", bool, False, "accepted, ignored"),
    ("--preserve-fds", "preserve_fds", int, 0, "pass fds 3..3+N-1 to the process"),
)
_FORMAT = (("-f --format", "format", ("table", "json"), "table", "table or json"),)
VERBS = {
    "create": ("create a container from a bundle", ("id",), _CREATING),
    "start": ("run the created container's process", ("id",), ()),
    "run": ("create and start a container", ("id",),
            (*_CREATING, ("-d --detach", "detach", bool, False, "do not wait for it"))),
    "state": ("print the container's state as JSON", ("id",), ()),
    "kill": ("send a signal to the container's init", ("id", "signal=SIGTERM"),
             (("-a --all", "all", bool, False, "to every process of the container"),)),
    "delete": ("remove a stopped container", ("id",),
               (("-f --force", "force", bool, False, "kill it first if it runs"),)),
    "exec": ("run another process in the container", ("id", "argv..."), (
        ("-p --process", "process", str, None, "the process as config.json's, a file"),
        ("-t --tty", "tty", bool, False, "give it a terminal"),
        ("--console-socket", "console_socket", str, None, "send the terminal's fd here"),
        ("-d --detach", "detach", bool, False, "do not wait for it"),
        ("--pid-file", "pid_file", str, None, "write its pid here"),
        ("--cwd", "cwd", str, None, "its working directory"),
        ("-e --env", "env", list, None, "NAME=VALUE, repeatable"),
        ("-u --user", "user", str, None, "UID[:GID]"),
        ("-g --additional-gids", "additional_gids", list, None, "repeatable"),
        ("-c --cap", "cap", list, None, "add a capability, repeatable"),
        ("--no-new-privs", "no_new_privs", bool, None, "set (or =false: clear) no_new_privs"),
        ("--preserve-fds", "preserve_fds", int, 0, "pass fds 3..3+N-1 to the process"),
    )),
    "list": ("list containers", (),
             (*_FORMAT, ("-q --quiet", "quiet", bool, False, "the ids only"))),
    "ps": ("list the container's processes", ("id",), _FORMAT),
    "pause": ("freeze every process of the container", ("id",), ()),
    "resume": ("thaw a paused container", ("id",), ()),
    "update": ("change a running container's resources", ("id",), (
        ("-r --resources", "resources", str, None, "linux.resources JSON file, - for stdin"),
        ("--memory", "memory", str, None, "memory limit: 64M, 1G, bytes"),
        ("--pids-limit", "pids_limit", int, None, "most processes"),
        ("--cpu-quota", "cpu_quota", int, None, "CFS quota, microseconds"),
        ("--cpu-period", "cpu_period", int, None, "CFS period, microseconds"),
    )),
    "events": ("the container's resource figures, as JSON", ("id",), (
        ("--stats", "stats", bool, False, "once, then exit"),
        ("--interval", "interval", str, "5s", "between two, while it runs (5s, 500ms)"),
    )),
    "features": ("what this runtime supports, as JSON", (), ()),
    "spec": ("write a default config.json", (), (
        ("-b --bundle", "bundle", str, ".", "where to write it"),
        ("--rootless", "rootless", bool, False, "for a rootless container"),
    )),
}  # fmt: skip


def parse(argv: list[str]) -> Args:
    """runc's command line: global flags, the verb, its flags and arguments."""
    args = Args()
    found = parse_flags(args, argv, GLOBAL_FLAGS, (), "")
    if not found or args.help or args.version:
        return args
    verb, tokens = found[0], found[1:]
    if verb not in VERBS:
        raise PyvmmError(f"unknown command {verb!r} (see --help)")
    args.command = verb
    _, arguments, flags = VERBS[verb]
    found = parse_flags(args, tokens, (*flags, _HELP), arguments, f"{verb}: ")
    if not args.help:
        set_arguments(args, found, arguments, f"{verb}: ")
    return args


def _usage(verb: str | None) -> str:
    if verb is None:
        lines = ["usage: pyvmm-runtime [global flags] COMMAND [flags] [arguments]",
                 "An OCI runtime (runc's command line).", "", "commands:"]  # fmt: skip
        lines += [f"  {name:<10} {about}" for name, (about, _, _) in VERBS.items()]
        flags = GLOBAL_FLAGS
    else:
        about, arguments, flags = VERBS[verb]
        names = " ".join(a.partition("=")[0] for a in arguments)
        lines = [f"usage: pyvmm-runtime {verb} [flags] {names}".rstrip(), about]
        flags = (*flags, _HELP)
    lines += ["", "flags:", *help_lines(flags)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = None
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
        if args.version:
            from vmm.container import OCI_VERSION

            print(f"pyvmm-runtime version 0.1.0\nspec: {OCI_VERSION}")
            return 0
        if args.help:
            print(_usage(args.command))
            return 0
        if args.systemd_cgroup:
            raise PyvmmError("--systemd-cgroup is not supported: use cgroupfs paths")
        if args.debug and args.log:
            _log(args, "debug", "pyvmm-runtime " + " ".join(argv))
        if args.command is None:
            raise PyvmmError("a command is required (see --help)")
        return COMMANDS[args.command](args) or 0
    except PyvmmError as e:
        _error(args, str(e))
    except OSError as e:
        _error(args, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    return 1


def _error(args, message: str) -> None:
    """The error on stderr and in ``--log``, as runc: a JSON record on stderr when
    asked for JSON and no ``--log`` (an engine parses it); else one line for a human."""
    if getattr(args, "log", None):
        _log(args, "error", message)
    if getattr(args, "log_format", "text") == "json" and not getattr(args, "log", None):
        sys.stderr.write(_record(args, "error", message))
    else:
        sys.stderr.write(f"pyvmm-runtime: {message}\n")


def _log(args, level: str, message: str) -> None:
    """One record in ``--log``, in runc's format (containerd's shim reads the last
    error from it)."""
    with open(args.log, "a") as f:
        f.write(_record(args, level, message))


def _record(args, level: str, message: str) -> str:
    """A line as runc's logrus writes it: JSON ``{"level", "msg", "time"}``, or text
    ``time="..." level=error msg="..."`` (the message quoted as Go's %q would)."""
    import json
    import time

    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.log_format == "json":
        return json.dumps({"level": level, "msg": message, "time": t}) + "\n"
    return f'time="{t}" level={level} msg={json.dumps(message, ensure_ascii=False)}\n'


def _create(args) -> int:
    from vmm.container.oci import runtime

    runtime.create(args.root, args.id, args.bundle, pid_file=args.pid_file,
                   console_socket=args.console_socket, no_pivot=args.no_pivot,
                   preserve_fds=args.preserve_fds)  # fmt: skip
    return 0


def _start(args) -> int:
    from vmm.container.oci import runtime

    runtime.start(args.root, args.id)
    return 0


def _run(args) -> int:
    """create and start; attached: wait for the init, forward signals, delete."""
    from vmm.container.oci import runtime

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
    with runtime.forwarding_signals(c.state.pid):
        code = runtime.wait(c)
    runtime.delete(args.root, args.id, force=True)
    return code


def _state(args) -> int:
    import json

    from vmm.container.oci import runtime

    print(json.dumps(runtime.load(args.root, args.id).oci_state(), indent=2))
    return 0


def _kill(args) -> int:
    from vmm.container.oci import runtime

    runtime.kill(args.root, args.id, runtime.parse_signal(args.signal), args.all)
    return 0


def _delete(args) -> int:
    from vmm.container.oci import statedir

    if args.force and statedir.gone(args.root, args.id):
        return 0  # runc: --force of a missing container succeeds (Docker's second delete)
    from vmm.container.oci import runtime

    runtime.delete(args.root, args.id, args.force)
    return 0


def _exec(args) -> int:
    """The process from --process, or the container's own with the command, flags and
    environment given here (runc's rules)."""
    import json

    from vmm.container.oci import runtime

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
        process = runtime.exec_process(args.root, args.id, args.argv, args.tty)
        process["env"] = [*process.get("env", []), *args.env]
        if args.cwd:
            process["cwd"] = args.cwd
        user = process["user"]
        if args.user:
            uid, _, gid = args.user.partition(":")
            user.update(uid=_number("--user", uid), gid=_number("--user", gid or "0"))
        gids = [_number("--additional-gids", g) for g in args.additional_gids]
        user["additionalGids"] = [*user.get("additionalGids", []), *gids]
        if args.cap and process.get("capabilities") is not None:  # none: root keeps all
            caps = process["capabilities"] = dict(process["capabilities"])
            for name in ("bounding", "effective", "permitted", "ambient"):  # runc 1.1.5's
                caps[name] = [*caps.get(name, []), *args.cap]
        if args.no_new_privs is not None:
            process["noNewPrivileges"] = args.no_new_privs
    return runtime.exec_(args.root, args.id, process, console_socket=args.console_socket,
                         preserve_fds=args.preserve_fds, pid_file=args.pid_file,
                         detach=args.detach)  # fmt: skip


def _events(args) -> int:
    """runc's ``events``: with ``--stats`` one ``{"type": "stats", ...}`` object;
    without, one every ``--interval`` until the container stops."""
    import json
    import re
    import time

    from vmm.container.oci import runtime

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", args.interval)
    if not m or float(m.group(1)) <= 0:
        raise PyvmmError(f"events: --interval {args.interval!r}: use a duration such as 5s")
    interval = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]
    c = runtime.load(args.root, args.id)
    while True:
        if c.status() == "stopped":
            raise PyvmmError(f"container {args.id} is not running")
        data = c.cgroup().stats()
        print(json.dumps({"type": "stats", "id": args.id, "data": data}), flush=True)
        if args.stats:
            return 0
        time.sleep(interval)


def _number(flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PyvmmError(f"exec: {flag}: {text!r} is not a number") from None


def _list(args) -> int:
    import json

    from vmm.container.oci import runtime

    containers = runtime.list_all(args.root)
    if args.quiet:
        for c in containers:
            print(c.state.id)
        return 0
    rows = [c.oci_state() for c in containers]
    if args.format == "json":
        print(json.dumps(rows or None))  # runc's Go prints a nil slice: null
        return 0
    table = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    table += [[r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], "root"]
              for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(6)]
    for row in table:
        print("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _ps(args) -> int:
    import json

    from vmm.container.oci import runtime

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
    from vmm.container.oci import runtime

    runtime.pause(args.root, args.id, True)
    return 0


def _resume(args) -> int:
    from vmm.container.oci import runtime

    runtime.pause(args.root, args.id, False)
    return 0


def _update(args) -> int:
    import json

    from vmm.container.oci import runtime

    if args.resources:
        text = sys.stdin.read() if args.resources == "-" else open(args.resources).read()
        try:
            resources = json.loads(text)
        except ValueError as e:
            raise PyvmmError(f"--resources: not valid JSON: {e}") from None
    else:
        resources = {}
    if args.memory:
        from vmm.container.linux.cgroups import parse_size

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
    import json

    from vmm.container.linux import capabilities, mounts, seccomp
    from vmm.container.oci import spec

    print(json.dumps({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": spec.OCI_VERSION,
        "hooks": list(spec.HOOK_POINTS),
        "mountOptions": sorted([*mounts.FLAGS, *mounts.PROPAGATION, *mounts.EXTENSIONS]),
        "linux": {
            "namespaces": list(spec.NAMESPACES),
            "capabilities": capabilities.supported(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": list(seccomp.ACTIONS),
                "operators": list(seccomp.OPERATORS),
                "archs": sorted(oci for _, oci in seccomp.MACHINES.values()),
                "knownFlags": list(seccomp.FLAGS),
                "supportedFlags": list(seccomp.FLAGS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "pyvmm"},
    }, indent=2))  # fmt: skip
    return 0


def _spec(args) -> int:
    import json

    from vmm.container.oci import spec

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
    "events": _events,
    "features": _features,
    "spec": _spec,
}


def entry() -> None:
    from vmm.cli.finish import finish

    finish(main())
