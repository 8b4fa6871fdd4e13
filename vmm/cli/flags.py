"""Command lines parsed from a table of flags: the parser of the two hot commands.

``pyvmm boot`` and ``pyvmm-runtime`` are measured as whole processes (docs/bench.md,
"Start-up budget"), and importing argparse, with the gettext and locale lookups its
messages make, and building a parser cost half as much again as Python's own start.
So both describe their flags as tables and parse them here, in one small loop.

A flag is a tuple: its names, the attribute it sets, what it takes, its default, its
line of help (None: not shown) and, optionally, the name of its value in the help. It
takes nothing (``bool``; Go's ``--name=true`` and ``=false`` too), a string (``str``), a
number (``int``), one of a tuple of choices, a string that may be repeated (``list``),
or a value that may be left out (``Optional``). As in runc (urfave/cli over Go's flag
package): ``--name VALUE``, ``--name=VALUE``, and ``-name`` for a long name too; flags
may come before, between and after the arguments; ``--`` ends them. A command's
arguments: ``"id"`` is required, ``"signal=SIGTERM"`` optional with its default,
``"argv..."`` takes the rest as it is.
"""

from __future__ import annotations

from vmm.errors import PyvmmError

# What Go's strconv.ParseBool takes, for --name=VALUE of a flag that takes no value.
BOOLEANS = {v: True for v in ("1", "t", "T", "TRUE", "true", "True")} | {
    v: False for v in ("0", "f", "F", "FALSE", "false", "False")
}


class Optional:
    """A flag whose value may be left out: ``--gdb``, ``--gdb PORT`` or ``--gdb=PORT``.
    Alone, or before another flag, it sets ``const``."""

    def __init__(self, const: str):
        self.const = const


class Args:
    """What the command line said: each flag's and argument's value, by attribute."""

    command: str | None = None


def _value(where: str, name: str, kind, text: str):
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise PyvmmError(f"{where}{name}: invalid number {text!r}") from None
    if isinstance(kind, tuple) and text not in kind:
        raise PyvmmError(f"{where}{name}: {text!r} is not one of {', '.join(kind)}")
    return text


def parse_flags(args: Args, tokens: list[str], flags: tuple, arguments: tuple,
                where: str) -> list[str]:  # fmt: skip
    """Set ``flags`` on ``args`` from ``tokens``; return the arguments among them. With
    ``arguments`` empty the first argument ends the flags (runc's global flags, before
    its verb). ``where`` begins each error ("boot: ")."""
    by_name = {n: flag for flag in flags for n in flag[0].split()}
    for flag in flags:
        setattr(args, flag[1], [] if flag[2] is list else flag[3])
    rest = arguments[-1].endswith("...") if arguments else False
    fixed = len(arguments) - rest
    found: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            found += tokens[i:]
            break
        if not token.startswith("-") or token == "-" or (rest and len(found) >= fixed):
            found.append(token)
            if not arguments or (rest and len(found) > fixed):
                found += tokens[i:]  # the command and its own flags, or the verb's tokens
                break
            continue
        name, eq, value = token.partition("=")
        if name not in by_name and f"-{name}" in by_name:
            name = f"-{name}"  # -root: Go's flag package takes one dash as well as two
        if name not in by_name:
            raise PyvmmError(f"{where}flag provided but not defined: {name}")
        dest, kind = by_name[name][1:3]
        if kind is bool:  # --name, or Go's --name=true and --name=false
            if eq and value not in BOOLEANS:
                raise PyvmmError(f"{where}{name}: {value!r} is not true or false")
            setattr(args, dest, BOOLEANS.get(value, True))
            continue
        if not eq and isinstance(kind, Optional):
            taken = i < len(tokens) and not tokens[i].startswith("-")
            value = tokens[i] if taken else kind.const
            i += taken
        elif not eq:
            if i == len(tokens):
                raise PyvmmError(f"{where}{name} needs a value")
            value = tokens[i]
            i += 1
        value = _value(where, name, str if kind is list else kind, value)
        if kind is list:
            getattr(args, dest).append(value)
        else:
            setattr(args, dest, value)
    return found


def set_arguments(args: Args, found: list[str], arguments: tuple, where: str) -> None:
    """Set the command's ``arguments`` (see the module's docstring) from ``found``."""
    for i, spec in enumerate(arguments):
        name, _, default = spec.partition("=")
        if name.endswith("..."):
            setattr(args, name[:-3], found[i:])
            return
        if i < len(found):
            setattr(args, name, found[i])
        elif default:
            setattr(args, name, default)
        else:
            raise PyvmmError(f"{where}the following arguments are required: {name}")
    if len(found) > len(arguments):
        raise PyvmmError(f"{where}unexpected arguments: {' '.join(found[len(arguments) :])}")


def help_lines(flags: tuple, width: int = 80) -> list[str]:
    """The flags as a help screen lists them: names and value, then the help, wrapped
    to ``width`` beside a column of 30 and shown with the default unless it is none."""
    import textwrap  # --help only

    lines = []
    for names, _, kind, default, about, *metavar in flags:
        if about is None:
            continue
        shown = metavar[0] if metavar else "|".join(kind) if isinstance(kind, tuple) else "VALUE"
        value = "" if kind is bool else f" [{shown}]" if isinstance(kind, Optional) else " " + shown
        if default not in (None, False):
            about += f" (default {default})"
        left = f"  {names.replace(' ', ', ') + value:<28} "
        text = textwrap.wrap(about, max(width - 31, 20))
        if len(left) > 31:
            lines.append(left.rstrip())
            left = ""
        lines.append(left.ljust(31) + text[0])
        lines += [" " * 31 + t for t in text[1:]]
    return lines
