"""``pyvmm boot``'s command line: the flag table of vmm/cli/boot.py, parsed by
vmm/cli/flags.py (the parser pyvmm-runtime uses too), and its help screen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmm.cli.boot import FLAGS, parse
from vmm.errors import PyvmmError


def test_no_flags_gives_every_default():
    options = parse([])
    assert options["memory"] == "64M" and options["cpus"] == "1"
    assert options["disks"] == options["nets"] == options["publish"] == []
    assert options["gdb_address"] is None and options["trace"] is False
    assert set(options) == {flag[1] for flag in FLAGS}


@pytest.mark.parametrize(
    ("argv", "address", "trace"),
    [
        (["--gdb"], "127.0.0.1:1234", False),
        (["--gdb", "--trace"], "127.0.0.1:1234", True),
        (["--gdb", "127.0.0.1:0", "--trace"], "127.0.0.1:0", True),
        (["--gdb=:5555"], ":5555", False),
    ],
)
def test_gdb_takes_an_address_or_its_default(argv, address, trace):
    options = parse(argv)
    assert (options["gdb_address"], options["trace"]) == (address, trace)


def test_short_names_repeats_and_equals():
    options = parse(["-m", "128M", "--disk", "a.img", "--disk=b.img,ro", "-p", "8080:80",
                     "--cmdline=-- 7"])  # fmt: skip
    assert options["memory"] == "128M"
    assert options["disks"] == ["a.img", "b.img,ro"] and options["publish"] == ["8080:80"]
    assert options["cmdline"] == "-- 7"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "boot: flag provided but not defined: --bogus"),
        (["--memory"], "boot: --memory needs a value"),
        (["guest.elf"], "boot: unexpected arguments: guest.elf"),
        (["--trace=maybe"], "boot: --trace: 'maybe' is not true or false"),
    ],
)
def test_mistakes_are_refused_by_name(argv, message):
    with pytest.raises(PyvmmError) as e:
        parse(argv)
    assert str(e.value) == message


def test_a_mistake_is_one_line_and_status_2_from_the_real_command():
    proc = subprocess.run([sys.executable, "-m", "vmm", "boot", "--cpu", "2"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "pyvmm: boot: flag provided but not defined: --cpu\n"


def test_help_lists_every_flag_within_the_width():
    env = {"COLUMNS": "70", "PATH": "/usr/bin"}
    proc = subprocess.run([sys.executable, "-m", "vmm", "boot", "--help"], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.startswith("usage: pyvmm boot [flags]")
    for names, *_ in FLAGS:
        assert all(name in proc.stdout for name in names.split())
    assert "--gdb [[HOST:]PORT]" in proc.stdout and "(default 64M)" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 70
