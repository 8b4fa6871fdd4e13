"""Every command block the docs mark as runnable runs, and prints what the doc shows.

A runnable block is fenced with the info string ``console run`` and, after ``run``,
what it needs: ``kvm``, ``root``, ``cgroup`` (root is enough for cgroups here), and
``slow`` for a block of minutes (marked so, left out by ``-m "not slow"``). In it,
``$ `` lines are commands (bash, from a scratch folder that sees the repository's
``scripts/``, ``guest/`` and ``labs/``, with the venv first on the PATH and
``PYVMM_ROOT`` a scratch state root holding the busybox and workload images); the lines
after a command are its expected stdout. A ``...`` line stands for any lines. Every
command must exit 0: a doc that shows a failure shows it with ``; echo $?``. A command
that only sets a variable (``K=$(...)``) is run again before each later command of its
block, so that they see it, as in the reader's shell. Blocks
without ``run`` are illustrations (or too slow for a test, like a full ``pyvmm bench``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from vmtest import ROOT, kvm_usable

DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("labs/*/README.md")])
_FENCE = re.compile(r"^```console run(?P<needs>(?: \w+)*)\n(?P<body>.*?)^```$", re.M | re.S)


_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=(?:\$\(.*\)|\S*)")  # NAME=value, nothing else


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    needs: tuple[str, ...]
    command: str
    expected: tuple[str, ...]
    setup: tuple[str, ...] = ()  # the block's earlier NAME=value commands, run first


def commands() -> list[Command]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in _FENCE.finditer(text):
            first = text.count("\n", 0, block.start("body")) + 1
            needs = tuple(block["needs"].split())
            current: list | None = None
            assignments: list[str] = []
            for offset, line in enumerate(block["body"].splitlines()):
                if line.startswith("$ "):
                    current = [first + offset, line[2:], [], needs, tuple(assignments)]
                    current.append(doc.relative_to(ROOT).as_posix())
                    found.append(current)
                    if _ASSIGNMENT.fullmatch(line[2:]):
                        assignments.append(line[2:])
                elif current is not None:
                    current[2].append(line)
    return [Command(c[5], c[0], c[3], c[1], tuple(c[2]), c[4]) for c in found]


def matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """Line by line, trailing spaces ignored; a ``...`` line matches any run of lines."""
    for i, line in enumerate(expected):
        if line == "...":
            rest = expected[i + 1 :]
            return any(matches(rest, actual[j:]) for j in range(i, len(actual) + 1))
        if i >= len(actual) or line.rstrip() != actual[i].rstrip():
            return False
    return len(actual) == len(expected)


@pytest.fixture(scope="session")
def scratch(tmp_path_factory, guest_build) -> dict[str, str]:
    """A folder to run the docs' commands in (the guest built), and their environment."""
    work = tmp_path_factory.mktemp("docs")
    for name in ("scripts", "guest", "labs"):
        (work / name).symlink_to(ROOT / name)
    state = tmp_path_factory.mktemp("pyvmm-root")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
        "PYVMM_ROOT": str(state),
        "XDG_STATE_HOME": str(work / ".state"),
        "HOME": str(work),
    }
    return {"cwd": str(work), "root": str(state), **{"env": env}}


@pytest.fixture(scope="session")
def images(scratch) -> None:
    workload = ROOT / "guest" / "workload" / "workload"
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "build_images.py", "--root", scratch["root"],
         "--workload", workload if workload.is_file() else "/bin/busybox"],
        check=True, capture_output=True,
    )  # fmt: skip


COMMANDS = commands()


def test_docs_have_runnable_blocks():
    assert len(COMMANDS) >= 10
    assert {c.doc for c in COMMANDS} >= {"README.md", "docs/labs.md", "docs/containers.md"}


def test_a_variable_set_in_a_block_is_there_for_its_later_commands():
    set_k, use_k = next(
        (a, b) for a, b in zip(COMMANDS, COMMANDS[1:], strict=False) if b.setup == (a.command,)
    )
    assert set_k.command.startswith("K=") and "$K" in use_k.command


@pytest.mark.parametrize(
    "c",
    # A block marked "slow" (Linux boots: minutes each under PVM) is left to the full run.
    [pytest.param(c, marks=[pytest.mark.slow] if "slow" in c.needs else []) for c in COMMANDS],
    ids=lambda c: f"{c.doc}:{c.line}",
)
def test_doc_command(c: Command, scratch, request):
    if "kvm" in c.needs and not kvm_usable():
        pytest.skip("needs a usable /dev/kvm")
    if {"root", "cgroup"} & set(c.needs):
        if os.geteuid() != 0:
            pytest.skip("needs root")
        request.getfixturevalue("images")
    proc = subprocess.run(
        ["bash", "-c", "\n".join([*c.setup, c.command])], cwd=scratch["cwd"],
        env=scratch["env"], capture_output=True, text=True,
        timeout=900 if "slow" in c.needs else 300,
    )  # fmt: skip
    where = f"{c.doc}:{c.line}: $ {c.command}"
    assert proc.returncode == 0, f"{where}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    if c.expected:
        actual = proc.stdout.splitlines()
        assert matches(c.expected, actual), (
            f"{where}\nexpected:\n" + "\n".join(c.expected) + "\ngot:\n" + proc.stdout
        )


def test_ci_runs_exactly_the_readmes_test_command():
    """CI proves what a newcomer types: .ci/run ends in the README's test command."""
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert "pytest" in ci and f"\n    {ci}\n" in (ROOT / "README.md").read_text()
