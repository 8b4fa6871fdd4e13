"""``pyvmm container``, ``image``, ``volume`` and ``network``: parse, call, print.

Each command is a few lines over the library (``container.py``, ``images.py``,
``volumes.py``); errors are ``PyvmmError``s the top-level CLI prints in one line.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

IMPORT_START = time.perf_counter()  # what importing the container runtime costs `run`

import click  # noqa: E402

from vmm.container.engine import container as lifecycle  # noqa: E402
from vmm.container.engine import volumes  # noqa: E402
from vmm.container.engine.security import from_options  # noqa: E402
from vmm.container.image import images  # noqa: E402
from vmm.container.linux.cgroups import Limits, host_version, parse_size  # noqa: E402
from vmm.container.store import layers, records  # noqa: E402
from vmm.container.store.names import split_image_ref  # noqa: E402
from vmm.container.store.records import Broken  # noqa: E402
from vmm.container.store.state import Store  # noqa: E402
from vmm.errors import PyvmmError  # noqa: E402


def _store(ctx: click.Context) -> Store:
    return Store(ctx.obj["root"])


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"


def _ago(t: float) -> str:
    s = int(time.time() - t)
    if s < 120:
        return f"{s} seconds"
    return f"{s // 60} minutes" if s < 7200 else f"{s // 3600} hours"


def _status(rec) -> str:
    if isinstance(rec, Broken):
        return f"Broken ({rec.reason})"
    if rec.status == "running":
        return f"Up {_ago(rec.started_at)}"
    if rec.status == "exited":
        code = "unknown" if rec.exit_code is None else rec.exit_code
        return f"Exited ({code}) {_ago(rec.finished_at)} ago"
    return rec.status.capitalize()


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class _Group(click.Group):
    """A command group whose OS errors (no root, a full disk...) become one-line errors."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # a closed stdout: the top-level CLI ends quietly, as `ls | head` does
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise PyvmmError(f"{e.strerror or e}{where}") from None


@click.group(cls=_Group)
def container() -> None:
    """Run and manage containers."""


def _process_options(f):
    """The flags ``run`` and ``exec`` share, as Docker spells them."""
    for option in reversed([
        click.option("-i", "--interactive", is_flag=True, help="Pass stdin on to it."),
        click.option("-t", "--tty", is_flag=True, help="Give it a terminal (with -i: yours)."),
        click.option("-e", "--env", multiple=True, metavar="NAME[=VALUE]",
                     help="Set a variable (NAME alone: this shell's value)."),
        click.option("--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Read NAME=VALUE lines (# comments) from a file."),
        click.option("-w", "--workdir", metavar="DIR", help="Working directory inside it."),
        click.option("-u", "--user", metavar="NAME|UID[:GROUP|GID]",
                     help="Run as this user (names from the image's /etc/passwd, /etc/group)."),
    ]):  # fmt: skip
        f = option(f)
    return f


def _check_terminal(tty: bool, interactive: bool) -> None:
    if tty and interactive and not sys.stdin.isatty():
        raise PyvmmError("the input device is not a TTY: use -i without -t")


def _create_options(f):
    """What ``create`` and ``run`` take: the container's definition, as Docker's flags."""
    options = [
        click.option("--rm", "auto_remove", is_flag=True,
                     help="Remove the container when it exits."),
        _process_options,
        click.option("--entrypoint", metavar="CMD",
                     help="Run CMD instead of the image's entrypoint (\"\": none; no default "
                     "args)."),
        click.option("--name", help="Name the container (default: its short id)."),
        click.option("--hostname", help="Hostname inside the container (default: its short id)."),
        click.option("-v", "--volume", "volume_specs", multiple=True, metavar="SRC:DEST[:ro]",
                     help="Named volume (NAME:/path) or bind mount (/host/path:/path)."),
        click.option("--tmpfs", multiple=True, metavar="PATH[:OPTIONS]",
                     help="A tmpfs at PATH (nosuid,nodev,noexec unless OPTIONS say otherwise)."),
        click.option("--init", is_flag=True,
                     help="A tiny init as PID 1: it reaps orphans and passes signals on."),
        click.option("--read-only", is_flag=True,
                     help="A read-only root file system (/dev, volumes, tmpfs stay writable)."),
        click.option("--network", "network_mode",
                     metavar="bridge|none|host|container:NAME|NETWORK",
                     help="The container's network (docs/networking.md); default: a namespace "
                     "of its own with lo only."),
        click.option("-p", "--publish", multiple=True, metavar="[HOSTIP:]HOSTPORT:PORT[/tcp|udp]",
                     help="Publish a container port on the host (nftables DNAT, 127.0.0.1 too)."),
        click.option("--memory", help="Memory limit, e.g. 64M; the OOM killer enforces it."),
        click.option("--pids", type=click.IntRange(min=1), help="Maximum number of processes."),
        click.option("--cpus", type=click.FloatRange(min=0.01),
                     help="CPU time, in CPUs (0.5 = half)."),
        click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
                     help="An rlimit, e.g. nofile=1024:2048 (-1: unlimited)."),
        click.option("--cap-add", multiple=True, metavar="CAP", help="Add a capability (or ALL)."),
        click.option("--cap-drop", multiple=True, metavar="CAP",
                     help="Drop a capability (or ALL)."),
        click.option("--security-opt", "security_opts", multiple=True,
                     metavar="seccomp=PROFILE.json|unconfined",
                     help="A Docker seccomp profile instead of the default, or none."),
        click.option("--privileged", is_flag=True,
                     help="Every capability, no seccomp filter, no device rules (labs only)."),
        click.argument("image"),
        click.argument("command", nargs=-1, type=click.UNPROCESSED),
        click.pass_context,
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _definition(memory, pids, cpus, ulimits, cap_add, cap_drop, security_opts, privileged):
    """The limits and security of ``create``'s and ``run``'s flags (warnings printed)."""
    limits = Limits(memory=parse_size(memory) if memory else None, pids=pids, cpus=cpus)
    security = from_options(privileged, security_opts, cap_add, cap_drop, ulimits)
    for warning in security.warnings(host_version()):
        click.echo(f"pyvmm: warning: {warning}", err=True)
    return {"limits": limits, "security": security}


@container.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@_create_options
def run(ctx, image, command, memory, pids, cpus, ulimits, cap_add, cap_drop, security_opts,
        privileged, **options) -> None:  # fmt: skip
    """Run COMMAND in a new container from IMAGE; exit with its exit status."""
    t0 = time.perf_counter()  # the run request: pyvmm's own time is measured from here
    _check_terminal(options["tty"], options["interactive"] and not options["detach"])
    definition = _definition(memory, pids, cpus, ulimits, cap_add, cap_drop, security_opts,
                             privileged)  # fmt: skip
    rec, status = lifecycle.run(_store(ctx), image, list(command), t0=t0,
                                imports_s=t0 - IMPORT_START, **definition, **options)  # fmt: skip
    if status is None:
        click.echo(rec.id)
        return
    _exit_with(ctx, rec, status)


@container.command(context_settings={"allow_interspersed_args": False})
@_create_options
def create(ctx, image, command, memory, pids, cpus, ulimits, cap_add, cap_drop, security_opts,
           privileged, **options) -> None:  # fmt: skip
    """Create a container from IMAGE without starting it (start it with start); print its id."""
    definition = _definition(memory, pids, cpus, ulimits, cap_add, cap_drop, security_opts,
                             privileged)  # fmt: skip
    click.echo(lifecycle.create(_store(ctx), image, list(command), **definition, **options).id)


def _exit_with(ctx: click.Context, rec, status: int) -> None:
    if rec.oom_killed:
        limit = rec.limits.memory
        limit = f" (limit {human_size(limit)})" if limit else ""
        click.echo(f"pyvmm: container {rec.name} ran out of memory{limit}", err=True)
    ctx.exit(status)


@container.command()
@click.option("-a", "--attach", is_flag=True, help="Attach to its output and wait for it.")
@click.argument("name")
@click.pass_context
def start(ctx, name, attach) -> None:
    """Start a stopped container again, on the same writable layer."""
    rec, status = lifecycle.start(_store(ctx), name, attach)
    if status is None:
        click.echo(name)
    else:
        _exit_with(ctx, rec, status)


@container.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Start it and return at once.")
@_process_options
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx, name, command, tty, interactive, **options) -> None:
    """Run COMMAND in the running container NAME; exit with its exit status."""
    _check_terminal(tty, interactive)
    ctx.exit(lifecycle.exec_(_store(ctx), name, list(command), tty=tty,
                             interactive=interactive, **options))  # fmt: skip


@container.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only ids.")
@click.pass_context
def ps(ctx, show_all, quiet) -> None:
    """List containers (cleaning up after those whose runtime died)."""
    recs = lifecycle.list_containers(_store(ctx))
    recs = [r for r in recs if show_all or isinstance(r, Broken) or r.status != "exited"]
    if quiet:
        for r in recs:
            click.echo(r.id[:12])
        return
    rows = [["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"]]
    for r in recs:
        if isinstance(r, Broken):
            rows.append([r.id[:12], "?", "?", _status(r), ""])
            continue
        cmd = " ".join(r.command)
        cmd = cmd if len(cmd) <= 22 else cmd[:19] + "..."
        paused = " (Paused)" if lifecycle.is_paused(_store(ctx), r) else ""
        rows.append([r.id[:12], r.image, json.dumps(cmd), _status(r) + paused, r.name])
    _table(rows)


@container.command()
@click.option("-t", "--time", "timeout", default=10.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")  # fmt: skip
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def stop(ctx, names, timeout) -> None:
    """Stop running containers: SIGTERM, then SIGKILL."""
    for name in names:
        lifecycle.stop(_store(ctx), name, timeout)
        click.echo(name)


@container.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal to send.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def kill(ctx, names, sig) -> None:
    """Send a signal to the containers' first process."""
    try:
        name = "SIG" + sig.upper().removeprefix("SIG")
        number = int(sig) if sig.isdigit() else signal.Signals[name]
    except KeyError:
        raise PyvmmError(f"unknown signal {sig}") from None
    for name in names:
        lifecycle.kill(_store(ctx), name, number)
        click.echo(name)


@container.command()
@click.option("-f", "--force", is_flag=True, help="Kill it first if it is running.")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx, names, force) -> None:
    """Remove containers and their writable layers (volumes stay)."""
    for name in names:
        lifecycle.remove(_store(ctx), name, force)
        click.echo(name)


def _freezer(verb: str, frozen: bool, doc: str) -> None:
    """``pause`` (``frozen``) or ``unpause``: the one command, either way."""

    @container.command(verb, help=doc)
    @click.argument("names", nargs=-1, required=True)
    @click.pass_context
    def command(ctx, names) -> None:
        for name in names:
            lifecycle.pause(_store(ctx), name, frozen)
            click.echo(name)


_freezer("pause", True, "Freeze every process of the containers (the cgroup freezer).")
_freezer("unpause", False, "Thaw paused containers.")


@container.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def wait(ctx, names) -> None:
    """Wait for the containers to exit; print each one's exit status (-1: unknown)."""
    for name in names:
        code = lifecycle.wait(_store(ctx), name)
        click.echo(-1 if code is None else code)


@container.command()
@click.argument("name")
@click.argument("new_name")
@click.pass_context
def rename(ctx, name, new_name) -> None:
    """Rename a container."""
    lifecycle.rename(_store(ctx), name, new_name)


@container.command()
@click.argument("name")
@click.pass_context
def top(ctx, name) -> None:
    """The running container's processes (host pids), as ps -ef shows them."""
    from vmm.container.engine.observe import TOP_COLUMNS

    _table([TOP_COLUMNS, *lifecycle.top(_store(ctx), name)])


@container.command()
@click.option("--no-stream", is_flag=True, help="Print one table and exit.")
@click.argument("names", nargs=-1)
@click.pass_context
def stats(ctx, names, no_stream) -> None:
    """CPU, memory and process counts of running containers, from their cgroups
    (all running ones if no NAME), every second."""
    from vmm.container.engine import observe

    targets = lifecycle.running_cgroups(_store(ctx), list(names))
    before = {rec.id: observe.sample(cg) for rec, cg in targets}
    clear = sys.stdout.isatty() and not no_stream
    while True:
        time.sleep(0.5 if no_stream else 1.0)
        rows = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]]
        for rec, cg in targets:
            now = observe.sample(cg)
            cpu = observe.cpu_percent(before[rec.id], now)
            memory = f"{human_size(now.memory)} / {human_size(now.limit)}"
            share = now.memory / now.limit * 100 if now.limit else 0.0
            rows.append([rec.id[:12], rec.name, f"{cpu:.2f}%", memory, f"{share:.2f}%",
                         str(now.pids)])  # fmt: skip
            before[rec.id] = now
        if clear:
            click.echo("\033[2J\033[H", nl=False)  # the screen cleared, as docker stats
        _table(rows)
        if no_stream:
            return


@container.command()
@click.argument("source", metavar="SRC")
@click.argument("dest", metavar="DEST")
@click.pass_context
def cp(ctx, source, dest) -> None:
    """Copy files between a container and the host: one of SRC and DEST is
    CONTAINER:PATH (owners, modes and times kept; symlinks copied as symlinks)."""
    lifecycle.copy(_store(ctx), source, dest)


@container.command()
@click.argument("name")
@click.pass_context
def logs(ctx, name) -> None:
    """Print what the container wrote to stdout and stderr."""
    sys.stdout.buffer.write(lifecycle.logs(_store(ctx), name))


@container.command()
@click.argument("name")
@click.pass_context
def inspect(ctx, name) -> None:
    """Print the container's record as JSON (status, exit code, peak memory, capabilities,
    seccomp mode, rlimits, device rules...)."""
    click.echo(json.dumps(lifecycle.inspect(_store(ctx), name), indent=2, sort_keys=True))


@container.command()
@click.argument("name")
@click.pass_context
def diff(ctx, name) -> None:
    """Changes in the container's writable layer: A added, C changed, D deleted."""
    for kind, path in lifecycle.diff(_store(ctx), name):
        click.echo(f"{kind} {path}")


@click.group(cls=_Group)
def image() -> None:
    """Import, pull, push, build and manage images."""


@image.command("import")
@click.argument("source", type=click.Path())
@click.argument("ref", metavar="NAME[:TAG]")
@click.pass_context
def image_import(ctx, source, ref) -> None:
    """Import a rootfs directory or tar, an OCI layout, or a docker save tar."""
    from vmm.container.image import importer  # tarfile and friends: not on `run`'s path

    record = importer.import_image(_store(ctx), source, ref)
    click.echo(f"{record.ref} {record.id[:12]}")


def _registry_options(f):
    """--authfile and --plain-http, as Podman spells them."""
    f = click.option("--plain-http", is_flag=True,
                     help="HTTP without TLS (a loopback registry always is).")(f)  # fmt: skip
    return click.option("--authfile", type=click.Path(dir_okay=False),
                        help="Credentials file (default: ~/.docker/config.json).")(f)  # fmt: skip


@image.command("pull")
@click.argument("ref", metavar="[REGISTRY/]REPO[:TAG|@DIGEST]")
@click.argument("name", metavar="[NAME[:TAG]]", required=False)
@_registry_options
@click.pass_context
def image_pull(ctx, ref, name, authfile, plain_http) -> None:
    """Pull an image from a registry (stored as NAME:TAG, by default the repository's
    last component and the tag); only the layers the store lacks are fetched."""
    from vmm.container.image import pull  # http.client and the importer: not on `run`'s path

    record, digest = pull.pull(
        _store(ctx), ref, name, Path(authfile) if authfile else None, plain_http
    )
    click.echo(f"Digest: {digest}")
    click.echo(f"{record.ref} {record.id[:12]}")


@image.command("push")
@click.argument("image", metavar="NAME[:TAG]")
@click.argument("dest", metavar="[REGISTRY/]REPO[:TAG]")
@_registry_options
@click.pass_context
def image_push(ctx, image, dest, authfile, plain_http) -> None:
    """Push an image to a registry; layers it has already are not sent again."""
    from vmm.container.image import push

    digest = push.push(_store(ctx), image, dest, Path(authfile) if authfile else None, plain_http)
    click.echo(f"Digest: {digest}")


@image.command("build")
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False),
    help="The Containerfile (default: CONTEXT/Containerfile, else Dockerfile).",
)
@click.option("-t", "--tag", "ref", required=True, metavar="NAME[:TAG]", help="The image's name.")
@click.option(
    "--build-arg",
    "build_args",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="A value for an ARG (NAME alone: the environment's).",
)
@click.option("--no-cache", is_flag=True, help="Run every step, reusing no earlier one.")
@click.argument("context", type=click.Path())
@click.pass_context
def image_build(ctx, file, ref, build_args, no_cache, context) -> None:
    """Build an image from a Containerfile, one layer per step that changes files."""
    from vmm.container.engine import build

    if file is None:
        names = [Path(context) / n for n in ("Containerfile", "Dockerfile")]
        file = next((n for n in names if n.exists()), names[0])
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise PyvmmError(f"{file}: {getattr(e, 'strerror', None) or e}") from None
    args = {}
    for arg in build_args:  # NAME alone: its value in pyvmm's environment, as in Docker
        key, eq, value = arg.partition("=")
        if not key:
            raise PyvmmError(f"--build-arg {arg!r}: NAME[=VALUE] is expected")
        if eq or key in os.environ:
            args[key] = value if eq else os.environ[key]
    record = build.build(_store(ctx), text, Path(context), ref, args, no_cache,
                         lambda line: click.echo(line))  # fmt: skip
    click.echo(f"Successfully tagged {record.ref}")
    click.echo(record.id[:12])


@image.command("ls")
@click.pass_context
def image_ls(ctx) -> None:
    """List images; the total counts layers shared by images once."""
    store = _store(ctx)
    found = images.list_images(store)
    rows = [["NAME", "TAG", "IMAGE ID", "LAYERS", "SIZE"]]
    for ref, r in found:
        name, _, tag = ref.partition(":")
        if isinstance(r, Broken):
            rows.append([name, tag, _status(r), "?", "?"])
            continue
        size = images.size(store, r)
        size = "?" if size is None else human_size(size)
        rows.append([name, tag, r.id[:12], str(len(r.layers)), size])
    _table(rows)
    total = human_size(images.total_size(store, records.loaded([r for _, r in found])))
    click.echo(f"total {total} on disk (shared layers counted once)")


@image.command("inspect")
@click.argument("ref", metavar="NAME[:TAG]")
@click.pass_context
def image_inspect(ctx, ref) -> None:
    """Print the image's record and its layers (bottom first) as JSON."""
    store = _store(ctx)
    record = images.get(store, ref)
    data = records.to_json(record)
    data["layers"] = [{"digest": d, "size": layers.size(store, d)} for d in record.layers]
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@image.command("rm")
@click.option("-f", "--force", is_flag=True,
              help="Remove it even if stopped containers were created from it.")  # fmt: skip
@click.argument("refs", nargs=-1, required=True, metavar="NAME[:TAG]...")
@click.pass_context
def image_rm(ctx, refs, force) -> None:
    """Remove images, refused while a container uses them; unused layers go too."""
    store = _store(ctx)
    for ref in refs:
        containers = lifecycle.list_containers(store)  # reconciled: running means running
        with store.lock():
            name, tag = split_image_ref(ref)
            image = images.load(store, name, tag)
            users = images.Users([], [], lifecycle.layers_in_use(store), [])
            for rec in containers:
                if isinstance(rec, Broken):
                    users.unknown.append(rec)
                elif not isinstance(image, Broken) and rec.image_id == image.id:
                    running = rec.status in lifecycle.ACTIVE
                    (users.running if running else users.stopped).append(rec.name)
            if not isinstance(image, Broken):  # and any created since the listing
                known = {*users.running, *users.stopped}
                users.stopped += [
                    n for n in lifecycle.users_of(store, image=image) if n not in known
                ]
            images.remove(store, ref, users, force)
        click.echo(ref)


@click.group(cls=_Group)
def volume() -> None:
    """Create and manage named volumes."""


@volume.command("create")
@click.argument("name")
@click.pass_context
def volume_create(ctx, name) -> None:
    """Create a named volume (run -v NAME:/path also creates it on first use)."""
    store = _store(ctx)
    with store.lock():
        click.echo(volumes.create(store, name).name)


@volume.command("ls")
@click.pass_context
def volume_ls(ctx) -> None:
    """List named volumes and where their data lives."""
    store = _store(ctx)
    rows = [["VOLUME NAME", "MOUNTPOINT"]]
    for name, v in volumes.list_volumes(store):
        where = _status(v) if isinstance(v, Broken) else volumes.data_dir(store, name)
        rows.append([name, where])
    _table(rows)


@volume.command("inspect")
@click.argument("name")
@click.pass_context
def volume_inspect(ctx, name) -> None:
    """Print a volume's record as JSON."""
    store = _store(ctx)
    v = volumes.get(store, name)
    data = {"name": name, "error": v.reason} if isinstance(v, Broken) else records.to_json(v)
    data["mountpoint"] = volumes.data_dir(store, name)
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_rm(ctx, names) -> None:
    """Remove volumes and their data, refused while a container refers to them."""
    _remove_each(ctx, names, lambda store, name: volumes.remove(
        store, name, lifecycle.users_of(store, volume=name)))  # fmt: skip


def _remove_each(ctx: click.Context, names, remove) -> None:
    """``remove(store, name)`` for each name in turn under the lock, echoing each."""
    store = _store(ctx)
    for name in names:
        with store.lock():
            remove(store, name)
        click.echo(name)


@click.group(cls=_Group)
def network() -> None:
    """Create and manage container networks (Docker's bridge model)."""


@network.command("create")
@click.option("--subnet", metavar="CIDR", help="Its subnet (default: the next free 172.N/16).")
@click.argument("name")
@click.pass_context
def network_create(ctx, name, subnet) -> None:
    """Create a bridge network; containers join it with --network NAME."""
    from vmm.container.engine import network as networks

    store = _store(ctx)
    with store.lock():
        click.echo(networks.create(store, name, subnet).name)


@network.command("ls")
@click.pass_context
def network_ls(ctx) -> None:
    """List networks: their bridge, subnet and how many containers are on them."""
    from vmm.container.engine import network as networks

    rows = [["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "CONTAINERS"]]
    for name, n in networks.list_networks(_store(ctx)):
        if isinstance(n, Broken):
            rows.append(["", name, _status(n), "", ""])
        else:
            rows.append([n.id[:12], name, n.bridge, n.subnet, str(len(n.addresses))])
    _table(rows)


@network.command("inspect")
@click.argument("name")
@click.pass_context
def network_inspect(ctx, name) -> None:
    """Print a network's record as JSON: subnet, gateway, containers' addresses."""
    from vmm.container.engine import network as networks

    click.echo(json.dumps(networks.inspect(_store(ctx), name), indent=2, sort_keys=True))


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def network_rm(ctx, names) -> None:
    """Remove networks and their bridges, refused while a container is on them."""
    from vmm.container.engine import network as networks

    _remove_each(ctx, names, networks.remove)
