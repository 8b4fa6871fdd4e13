"""``pyvmm ctl SOCKET OP``: the client of a running VM's control socket (vmm/control/api.py)."""

from __future__ import annotations

import json
import os

import click


def _send(ctx: click.Context, op: str, **args) -> None:
    from vmm.control import api

    response = api.request(ctx.obj["socket"], op, **args)
    for key, value in response.items():
        click.echo(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")


@click.group()
@click.argument("socket_path", metavar="SOCKET")
@click.pass_context
def ctl(ctx: click.Context, socket_path: str) -> None:
    """Control a VM started with ``pyvmm boot --api-sock SOCKET``."""
    ctx.obj = {**(ctx.obj or {}), "socket": socket_path}


@ctl.command()
@click.pass_context
def pause(ctx: click.Context) -> None:
    """Stop the guest's vCPU (it uses no CPU until resumed)."""
    _send(ctx, "pause")


@ctl.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Let a paused guest run on."""
    _send(ctx, "resume")


@ctl.command()
@click.pass_context
def stats(ctx: click.Context) -> None:
    """Whether it runs, its CPU time, its memory and how much of it is touched."""
    _send(ctx, "stats")


@ctl.command()
@click.argument("directory", metavar="DIR")
@click.pass_context
def snapshot(ctx: click.Context, directory: str) -> None:
    """Save the VM's whole state into DIR (a new directory); restore it with
    ``pyvmm boot --restore DIR``. The guest runs on afterwards unless it was paused."""
    _send(ctx, "snapshot", dir=os.path.abspath(directory))


@ctl.command()
@click.option("--to", "to", required=True, metavar="unix:PATH|tcp:HOST:PORT",
              help="Where a `pyvmm boot --incoming ADDRESS` waits for the guest.")  # fmt: skip
@click.pass_context
def migrate(ctx: click.Context, to: str) -> None:
    """Move the running guest to another pyvmm (live: pre-copy rounds, then a short stop)."""
    _send(ctx, "migrate", to=to)
