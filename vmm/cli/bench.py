"""``pyvmm bench``: measurements, never assertions. Each subcommand prints a table of
medians and can write its raw figures as JSON.

With no subcommand, ``pyvmm bench`` runs the comparison this project exists for: one
workload as a host process, a tiny pyvmm VM, pyvmm containers and reference runtimes
(compare.py). Everything a user can get wrong is checked before the first run, so a
long benchmark never fails at the end for want of a writable output path.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from vmm.errors import PyvmmError

FAST_SIZE = "64K"
FAST_ROWS = ("host", "tiny-vm", "container-volume", "container-bind")
ROWS = (*FAST_ROWS, "crun", "runc", "linux-pyvmm", "linux-restored", "linux-microvm",
        "linux-qemu-restored", "linux-vm")  # fmt: skip


def _positive(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PyvmmError(f"{name} {text!r}: not a whole number") from None
    if value < 1:
        raise PyvmmError(f"{name} {text!r}: must be at least 1")
    return value


def _scale(text: str | None, option: str = "--scale") -> list[int]:
    if not text:
        return []
    return [_positive(option, part.strip()) for part in text.split(",")]


def _size(text: str) -> int:
    from vmm.memory import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise PyvmmError(f"--size: {e}") from None


def _writable(option: str, path: str | None) -> None:
    """Fail now, not after the benchmark, if the output cannot be written."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise PyvmmError(f"{option} {path}: is a directory")
    if not os.path.isdir(directory):
        raise PyvmmError(f"{option} {path}: directory {directory} does not exist")
    if not os.access(path if os.path.exists(path) else directory, os.W_OK):
        raise PyvmmError(f"{option} {path}: not writable")


def _progress():
    """A one-line progress display on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return lambda _text: None, lambda: None

    def show(text: str) -> None:
        sys.stderr.write(f"\r\033[K{text}")
        sys.stderr.flush()

    return show, lambda: show("")


@click.group(invoke_without_command=True)
@click.option("--runs", help="Measured runs per row, after one warm-up.  [default: 10]")
@click.option("--size", help="Workload input data size, e.g. 64M.  [default: 64M]")
@click.option("--scale", metavar="N,N,...", help="Also start N instances at once, for each N.")
@click.option("--rows", "only", metavar="KEY,...", help=f"Only these rows: {', '.join(ROWS)}.")
@click.option(
    "--row",
    "extra",
    multiple=True,
    metavar="NAME=COMMAND",
    help="Another row: COMMAND, {image} standing for the input image (repeatable).",
)
@click.option(
    "--fast",
    is_flag=True,
    help=f"A quick check: 1 run and no warm-up, {FAST_SIZE} input, rows "
    f"{','.join(FAST_ROWS)} unless --rows.",
)
@click.option("--json", "json_path", metavar="FILE", help="Write every figure and command here.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Charts (needs matplotlib).")
@click.option("--report", "report_path", metavar="FILE.md", help="Write a Markdown report here.")
@click.option("--root", metavar="DIR", help="Container state directory (default: pyvmm's --root).")
@click.pass_context
def bench(ctx, runs, size, scale, only, extra, fast, json_path, plot_path, report_path, root):
    """Measure pyvmm: the same workload as VM, container and host (no subcommand); the
    cost of VM exits (``exits``); the virtio-blk path (``disk``); vCPUs in parallel
    (``vcpus``); the workload N times at once in each way (``parallel``)."""
    if ctx.invoked_subcommand is not None:
        return
    from vmm.bench import rows as rowdefs
    from vmm.bench.compare import WARMUP, Bench
    from vmm.bench.report import markdown, table

    if fast:
        runs, size, only = runs or "1", size or FAST_SIZE, only or ",".join(FAST_ROWS)
    runs, size = runs or "10", size or "64M"
    chosen = _choose(rowdefs.standard_rows(), only) + [rowdefs.CommandRow(s) for s in extra]
    if not chosen:
        raise PyvmmError("no rows to run")
    for option, path in (("--json", json_path), ("--plot", plot_path), ("--report", report_path)):
        _writable(option, path)
    if plot_path:
        from vmm.bench.plot import require_matplotlib

        require_matplotlib()
    root = root or (ctx.find_root().obj or {}).get("root") or "/var/lib/pyvmm"
    show, clear = _progress()
    try:
        # A quick check's one run need not wait for a warm-up: it says whether every
        # row works, not how fast (a Linux row's warm-up is a whole boot).
        warmup = 0 if fast else WARMUP
        result = Bench(
            chosen, _positive("--runs", runs), _size(size), _scale(scale), root, show, warmup
        ).run()
    finally:
        clear()
    _emit(result, table, json_path)
    if report_path:
        with open(report_path, "w") as f:
            f.write(markdown(result))
    if plot_path:
        from vmm.bench.plot import plot

        plot(result, plot_path)


def _choose(rows: list, only: str | None) -> list:
    if not only:
        return rows
    keys = [k.strip() for k in only.split(",") if k.strip()]
    known = {r.key: r for r in rows}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise PyvmmError(f"--rows: unknown row {unknown[0]!r} (known: {', '.join(known)})")
    return [known[k] for k in keys]


def _emit(result: dict, table, json_path: str | None) -> None:
    click.echo(table(result))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)


def _figures(runs: int):
    """``--runs`` (default ``runs``) and ``--json``: what every measuring subcommand takes."""

    def decorate(command):
        command = click.option("--json", "json_path", type=click.Path(dir_okay=False),
                               help="Write figures here.")(command)  # fmt: skip
        return click.option("--runs", default=runs, show_default=True,
                            help="Runs per figure (median reported).")(command)  # fmt: skip

    return decorate


def _measure(name: str, runs: int, json_path: str | None, *args) -> None:
    """Run ``vmm.bench.<name>``'s ``measure`` (imported only now: a subcommand pays for
    its own benchmark's imports alone), print its table, save its figures."""
    module = importlib.import_module(f"vmm.bench.{name}")
    _writable("--json", json_path)
    _emit(module.measure(_positive("--runs", str(runs)), *args), module.table, json_path)


@bench.command()
@_figures(runs=7)
@click.option("--exits", "n_exits", default=20000, show_default=True, help="OUTs per run in (b).")
def exits(runs, n_exits, json_path):
    """Cost of a VM exit and of booting, beside a minimal C VMM on the same guest."""
    _measure("exits", runs, json_path, n_exits)


@bench.command()
@_figures(runs=3)
def vcpus(runs, json_path):
    """N busy vCPUs, N busy host CPUs: the GIL is released in KVM_RUN."""
    _measure("vcpus", runs, json_path)


@bench.command()
@_figures(runs=3)
@click.option("--counts", metavar="N,N,...",
              help="How many copies at once (and vCPUs for the VM).  [default: 1, 2 and "
                   "the host's CPUs]")  # fmt: skip
@click.option("--size", default="16M", show_default=True, help="Input data size.")
@click.option("--root", metavar="DIR", help="Container state directory (default: pyvmm's --root).")
@click.pass_context
def parallel(ctx, runs, counts, size, root, json_path):
    """The workload N times at once: N host processes, N containers, one Linux VM of N
    vCPUs running N copies; to the last result line, CPU, and the VM's boot."""
    from vmm.bench.parallel import measure, table

    _writable("--json", json_path)
    root = root or (ctx.find_root().obj or {}).get("root") or "/var/lib/pyvmm"
    show, clear = _progress()
    try:
        result = measure(root, _positive("--runs", str(runs)),
                         tuple(_scale(counts, "--counts")) or None, _size(size), show)  # fmt: skip
    finally:
        clear()
    _emit(result, table, json_path)


@bench.command()
@_figures(runs=5)
@click.option("--size", default="256M", show_default=True, help="Input data size.")
def disk(runs, size, json_path):
    """The virtio-blk path: the workload and raw reads in the tiny VM, beside the host."""
    _measure("disk", runs, json_path, _size(size))


@bench.command()
@_figures(runs=5)
def containers(runs, json_path):
    """pyvmm-runtime beside runc and crun: under Podman, create+start+delete, start-up."""
    _measure("containers", runs, json_path)


@bench.command()
@_figures(runs=3)
def pull(runs, json_path):
    """pyvmm image pull beside podman pull, from one loopback docker-registry."""
    _measure("registry", runs, json_path)


@bench.command()
@_figures(runs=3)
def build(runs, json_path):
    """pyvmm image build beside buildah bud with runc: cold and cached (root)."""
    _measure("build", runs, json_path)


@bench.command()
@_figures(runs=3)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(
        [
            "loopback",
            "container",
            "container_published",
            "podman",
            "pyvmm",
            "pyvmm_no_offload",
            "qemu",
            "pyvmm_vhost",
            "qemu_vhost",
        ]
    ),
    help="Only these rows (repeatable).",
)
def net(runs, only, json_path):
    """TCP latency and bulk throughput: loopback, pyvmm containers, Linux VM on pyvmm and
    on QEMU (root)."""
    _measure("net", runs, json_path, tuple(only))


@bench.command()
@click.option("--clones", "count", default=10, show_default=True, help="Guests to restore.")
@click.option(
    "--snapshot",
    "snapshot_dir",
    metavar="DIR",
    help="Restore this snapshot (default: one of the tiny kernel's counter, made here).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def clones(count, snapshot_dir, json_path):
    """Guests restored from one snapshot at once: the memory they share (RSS, PSS)."""
    from vmm.bench.clones import measure, table

    _emit(measure(_positive("--clones", str(count)), snapshot_dir), table, json_path)


@bench.command()
@click.option("--hops", default=5, show_default=True, help="Migrations of each guest.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def migrate(hops, json_path):
    """Live migration of an idle 256 MiB Linux guest, pyvmm beside QEMU's migrate."""
    from vmm.bench.migrate import measure, table

    _emit(measure(_positive("--hops", str(hops))), table, json_path)
