"""pyvmm-runtime's own parser of runc's command line (urfave/cli over Go's flag package):
what engines type is read as runc reads it, and a mistake is one line, status 1.

The verbs themselves run real containers in tests/container/test_runtime.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmm.cli.runtime import VERBS, parse
from vmm.errors import PyvmmError

RUNTIME = [sys.executable, "-c", "import sys; from vmm.cli.runtime import main; "
           "sys.exit(main())"]  # fmt: skip


def test_global_flags_then_verb_flags_and_arguments_in_any_order():
    args = parse(["--root", "/r", "--log-format=json", "kill", "c1", "KILL", "--all"])
    assert (args.root, args.log_format, args.command) == ("/r", "json", "kill")
    assert (args.id, args.signal, args.all) == ("c1", "KILL", True)


def test_defaults_and_one_dash_long_names():
    args = parse(["-root", "/r", "create", "-bundle", "/b", "--preserve-fds=2", "c1"])
    assert (args.root, args.bundle, args.preserve_fds, args.pid_file) == ("/r", "/b", 2, None)
    assert parse(["kill", "c1"]).signal == "SIGTERM"


def test_exec_keeps_the_commands_own_flags():
    args = parse(["exec", "-t", "-e", "A=1", "--env", "B=2", "c1", "sh", "-c", "echo -n x"])
    assert (args.tty, args.env, args.argv) == (True, ["A=1", "B=2"], ["sh", "-c", "echo -n x"])
    assert parse(["exec", "c1", "--", "ls", "--", "-l"]).argv == ["ls", "--", "-l"]


def test_a_flag_without_a_value_takes_gos_booleans():
    assert parse(["delete", "--force=false", "c1"]).force is False
    assert parse(["delete", "--force=true", "c1"]).force is True


def test_a_value_that_looks_like_a_flag_is_a_value():
    assert parse(["update", "--cpu-quota", "-1", "c1"]).cpu_quota == -1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create"], "create: the following arguments are required: id"),
        (["--bogus", "list"], "flag provided but not defined: --bogus"),
        (["list", "--format", "yaml"], "list: --format: 'yaml' is not one of table, json"),
        (["update", "--pids-limit", "many", "c1"], "update: --pids-limit: invalid number 'many'"),
        (["create", "--bundle"], "create: --bundle needs a value"),
        (["delete", "--force=yes", "c1"], "delete: --force: 'yes' is not true or false"),
        (["state", "c1", "c2"], "state: unexpected arguments: c2"),
        (["frobnicate"], "unknown command 'frobnicate' (see --help)"),
    ],
)
def test_mistakes_are_refused_by_name(argv, message):
    with pytest.raises(PyvmmError) as e:
        parse(argv)
    assert str(e.value) == message


def test_mistake_is_one_line_status_1_from_the_real_command():
    r = subprocess.run([*RUNTIME, "state"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "pyvmm-runtime: state: the following arguments are required: id\n"


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help_lists_the_verbs_and_flags(verb):
    argv = [*RUNTIME, "--help"] if verb is None else [*RUNTIME, verb, "--help"]
    r = subprocess.run(argv, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith("usage: pyvmm-runtime")
    if verb is None:
        assert all(f"  {v} " in r.stdout for v in VERBS)
    else:
        assert all(flag[0].split()[-1] in r.stdout for flag in VERBS[verb][2])
