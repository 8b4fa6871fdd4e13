"""The ``pyvmm`` command line.

The CLI parses and reports; the work happens in the library below it. Subcommand groups
are imported only when used, so a command does not pay for importing the container
runtime or the benchmark. ``pyvmm boot`` does not come through here at all
(``vmm/cli/entry.py``): click's import alone would be most of its start-up.
"""

from __future__ import annotations

import importlib

import click

from vmm.cli.finish import end_if_stdout_gone
from vmm.errors import PyvmmError, report


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules, imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        """Turn library errors into one line on stderr and their exit status, and Ctrl-C
        into status 130 for every subcommand (click alone would print "Aborted!" and exit
        1). Each command's ``finally`` blocks have run by the time it gets here."""
        try:
            return super().invoke(ctx)
        except (PyvmmError, KeyboardInterrupt) as e:
            ctx.exit(report(e))
        except BrokenPipeError:
            end_if_stdout_gone()
            raise


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    short_help="Boot a guest on KVM and run it until it powers off.",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def boot(ctx: click.Context, args: tuple[str, ...]) -> None:
    """``pyvmm boot`` parses its own options (``vmm/cli/boot.py``'s table); this hands
    them over when the boot came through the group (``pyvmm --root DIR boot``)."""
    from vmm.cli import boot as boot_cli

    ctx.exit(boot_cli.main(list(args)))


@click.group(
    cls=LazyGroup,
    lazy={
        "boot": "vmm.cli.group:boot",
        "ctl": "vmm.cli.ctl:ctl",
        "container": "vmm.cli.container:container",
        "image": "vmm.cli.container:image",
        "volume": "vmm.cli.container:volume",
        "network": "vmm.cli.container:network",
        "bench": "vmm.cli.bench:bench",
        "lab": "vmm.cli.lab:lab",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    envvar="PYVMM_ROOT",
    default="/var/lib/pyvmm",
    show_default=True,
    type=click.Path(file_okay=False),
    help="State directory for images, containers and volumes (or $PYVMM_ROOT).",
)
@click.version_option(package_name="pyvmm")
@click.pass_context
def main(ctx: click.Context, root: str) -> None:
    """pyvmm: boot a tiny VM on KVM, run the same program in a container, compare them."""
    ctx.obj = {"root": root}
