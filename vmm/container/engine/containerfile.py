"""Containerfiles (Dockerfiles): read into instructions, every error found before a build.

The grammar is Docker's (the Dockerfile reference): one instruction a line, its name
in any case; a backslash at the end of a line continues it; a line whose first
non-blank character is ``#`` is a comment, also between continued lines; RUN, CMD and
ENTRYPOINT take a JSON array of strings (the exec form) or a command line that runs
under ``/bin/sh -c`` (the shell form). Everything a build would only find at its
step (an unknown instruction, a bad ``ENV``, an unknown flag) is an error here, one
line naming the line number, so that a bad file is refused before anything is made.

``$NAME``, ``${NAME}``, ``${NAME:-word}`` and ``${NAME:+word}`` in the instructions
that take them are the build's variables (``ARG`` and ``ENV``), substituted at each
step (``expand``; ``\\$`` is a plain dollar); RUN's shell form is left to the shell,
as in Docker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from vmm.errors import PyvmmError

# The instructions pyvmm builds with (the Dockerfile reference's, less ONBUILD,
# STOPSIGNAL, HEALTHCHECK, SHELL, VOLUME and multi-stage builds).
INSTRUCTIONS = (
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
    "EXPOSE", "LABEL",
)  # fmt: skip
# The instructions whose arguments ``expand`` substitutes (the reference's
# "Environment replacement" list, RUN/CMD/ENTRYPOINT being the shell's business).
EXPANDED = ("FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE", "LABEL")
# COPY's and ADD's flags pyvmm takes: --chown=UID[:GID] (numeric: the image's
# /etc/passwd is not consulted) and --chmod=OCTAL.
COPY_FLAGS = ("--chown", "--chmod")
_VAR = re.compile(
    r"(?<!\\)\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_]\w*))",
    re.ASCII,
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"\d{1,5}(?:/(?:tcp|udp|sctp))?")


class ContainerfileError(PyvmmError):
    """A Containerfile pyvmm cannot build, with the line it is on."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: its name (upper case), its line, and its arguments: ``args`` the
    words or the JSON array, ``text`` the line as written after the name (the shell
    form's command, and what the build cache is keyed on), ``flags`` COPY's --X=Y."""

    line: int
    name: str
    text: str
    args: list[str]
    exec_form: bool = False
    flags: dict[str, str] = field(default_factory=dict)

    def error(self, message: str) -> ContainerfileError:
        return ContainerfileError(f"Containerfile:{self.line}: {self.name}: {message}")


def _logical_lines(source: str) -> list[tuple[int, str]]:
    """(first line number, text) of each instruction, continuations joined."""
    found, parts, start = [], [], 0
    for number, raw in enumerate(source.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # (Docker drops comments and blank lines inside continuations too)
        if not parts:
            start = number
        if raw.rstrip().endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        found.append((start, " ".join(p.strip() for p in parts)))
        parts = []
    if parts:
        found.append((start, " ".join(p.strip() for p in parts)))
    return found


def _json_array(text: str) -> list[str] | None:
    """The exec form's array, or None if ``text`` is not one (then it is a shell form)."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    return None


def _pairs(ins: Instruction, words: list[str]) -> list[tuple[str, str]]:
    """ENV's and LABEL's ``KEY=VALUE ...`` (or ENV's legacy ``KEY VALUE``)."""
    if ins.name == "ENV" and words and "=" not in words[0]:
        if len(words) < 2:
            raise ins.error(f"{words[0]!r} has no value (ENV NAME=VALUE)")
        return [(words[0], ins.text.split(None, 1)[1])]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ins.error(f"{word!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _words(ins_line: int, name: str, text: str) -> list[str]:
    """Whitespace-separated words; double or single quotes group, as in Docker's ENV."""
    words, cur, quote, any_ = [], [], None, False
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < len(text):
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
        elif c in "\"'":
            quote, any_ = c, True
        elif c.isspace():
            if cur or any_:
                words.append("".join(cur))
            cur, any_ = [], False
        elif c == "\\" and i + 1 < len(text):
            i += 1
            cur.append(text[i])
        else:
            cur.append(c)
        i += 1
    if quote:
        raise ContainerfileError(f"Containerfile:{ins_line}: {name}: unterminated quote")
    if cur or any_:
        words.append("".join(cur))
    return words


def _check_vars(ins: Instruction) -> None:
    """A ``${`` that ``expand`` cannot read is an error now, not at its step."""
    for arg in [ins.text] if ins.name in EXPANDED else []:
        rest = _VAR.sub("", arg.replace("\\$", ""))
        if "${" in rest:
            raise ins.error("bad substitution: use ${NAME}, ${NAME:-word} or ${NAME:+word}")


def _instruction(line: int, text: str) -> Instruction:
    name, _, rest = text.partition(" ")
    name, rest = name.upper(), rest.strip()
    if name not in INSTRUCTIONS:
        raise ContainerfileError(f"Containerfile:{line}: unknown instruction {text.split()[0]!r}")
    flags: dict[str, str] = {}
    if name in ("COPY", "ADD"):
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, eq, value = flag.partition("=")
            if key not in COPY_FLAGS or not eq or not value:
                raise ContainerfileError(
                    f"Containerfile:{line}: {name}: unsupported flag {flag!r} "
                    f"(pyvmm takes {'=, '.join(COPY_FLAGS)}=)"
                )
            flags[key] = value
            rest = rest.strip()
    array = _json_array(rest) if name in ("RUN", "CMD", "ENTRYPOINT", "COPY", "ADD") else None
    if array is not None:
        ins = Instruction(line, name, rest, array, True, flags)
    else:
        ins = Instruction(line, name, rest, _words(line, name, rest), False, flags)
    _check(ins)
    return ins


def _check(ins: Instruction) -> None:
    """What can be told of ``ins`` before the build: its arguments' number and shape."""
    args, name = ins.args, ins.name
    _check_vars(ins)
    if name in ("RUN", "WORKDIR", "USER", "FROM", "ARG", "ENV", "LABEL", "EXPOSE") and not args:
        raise ins.error("needs an argument")
    if name == "FROM" and len(args) != 1:
        if len(args) == 3 and args[1].upper() == "AS":
            raise ins.error("multi-stage builds (FROM ... AS) are not supported")
        raise ins.error("takes one image (FROM IMAGE[:TAG] or FROM scratch)")
    if name in ("COPY", "ADD") and len(args) < 2:
        raise ins.error("needs a source and a destination")
    if name in ("WORKDIR", "USER", "ARG") and len(args) != 1:
        raise ins.error("takes one argument")
    if name == "ARG" and not _NAME.fullmatch(args[0].partition("=")[0]):
        raise ins.error(f"{args[0].partition('=')[0]!r} is not a variable name")
    if name in ("ENV", "LABEL"):
        for key, _ in _pairs(ins, args):
            if name == "ENV" and not _NAME.fullmatch(key):
                raise ins.error(f"{key!r} is not a variable name")
    if name == "EXPOSE":
        for port in args:
            if "$" not in port and not _PORT.fullmatch(port):
                raise ins.error(f"{port!r} is not PORT[/tcp|udp|sctp]")
    if "--chmod" in ins.flags and not re.fullmatch(r"[0-7]{3,4}", ins.flags["--chmod"]):
        raise ins.error(f"--chmod={ins.flags['--chmod']}: an octal mode is expected")
    if "--chown" in ins.flags and not re.fullmatch(r"\d+(:\d+)?", ins.flags["--chown"]):
        raise ins.error(f"--chown={ins.flags['--chown']}: numeric UID[:GID] is expected")


def parse(source: str) -> list[Instruction]:
    """The instructions of a Containerfile's text; one line on the first error."""
    found = [_instruction(line, text) for line, text in _logical_lines(source)]
    froms = [i for i in found if i.name == "FROM"]
    before = next((i for i in found if i.name != "ARG"), None)
    if before is None or before.name != "FROM":
        where = f"Containerfile:{before.line}: " if before else "Containerfile: "
        raise ContainerfileError(f"{where}the first instruction must be FROM (after ARGs)")
    if len(froms) > 1:
        raise froms[1].error("multi-stage builds (a second FROM) are not supported")
    return found


def expand(text: str, variables: dict[str, str]) -> str:
    """``text`` with the build's variables substituted (unset ones are empty)."""

    def one(m: re.Match) -> str:
        if m.group("plain"):
            return variables.get(m.group("plain"), "")
        value = variables.get(m.group("braced"))
        if m.group("op") == "-":
            return value if value else m.group("word")
        if m.group("op") == "+":
            return m.group("word") if value else ""
        return value or ""

    return _VAR.sub(one, text)


def words(ins: Instruction, variables: dict[str, str]) -> list[str]:
    """``ins``'s arguments at its step: substituted, then split as ENV splits them."""
    if ins.exec_form:
        return [expand(a, variables) for a in ins.args]
    return _words(ins.line, ins.name, expand(ins.text, variables))


def pairs(ins: Instruction, variables: dict[str, str]) -> list[tuple[str, str]]:
    """ENV's or LABEL's pairs at its step."""
    expanded = Instruction(ins.line, ins.name, expand(ins.text, variables), [])
    return _pairs(expanded, words(ins, variables))
