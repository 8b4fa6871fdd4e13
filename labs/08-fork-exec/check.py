"""Lab 8's checks: mini_run runs a command as a child and reports its exit status."""

import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini, tail  # noqa: E402, F401

from vmm.course.labs import Check, CheckFailed  # noqa: E402

TITLE = "mini-run 1: fork and exec"
CONCEPT = "a container is a process: fork, exec, wait, exit status"


def runs_the_command(workdir: Path) -> str:
    expect(mini(workdir, "/bin/echo", "hello from mini-run"), 0, "hello from mini-run")
    return "/bin/echo printed its line"


def is_its_child(workdir: Path) -> str:
    proc = mini(workdir, "/bin/sh", "-c", 'tr "\\000" " " < /proc/$PPID/cmdline')
    parent = proc.stdout.strip()
    if proc.returncode or "mini_run.py" not in parent.split():
        raise CheckFailed(
            f"the command's parent process is '{parent or tail(proc)}', not mini_run.py: "
            "fork, then exec the command in the child, and wait for it"
        )
    return f"the command's parent: {parent}"


def passes_the_status_on(workdir: Path) -> str:
    status = 1 + secrets.randbelow(120)  # a status mini_run cannot know in advance
    # None of them dumps core; not SIGPIPE, which Python ignores and an exec keeps
    # ignored, so `kill -PIPE $$` would not end the command.
    signal = secrets.choice((1, 2, 10, 12, 14, 15))
    expect(mini(workdir, "/bin/sh", "-c", f"exit {status}"), status)
    expect(mini(workdir, "/bin/sh", "-c", f"kill -{signal} $$"), 128 + signal)
    expect(mini(workdir, "/bin/sh", "-c", "kill -9 $$"), 137)
    return f"exit {status} gives {status}, signal {signal} gives {128 + signal}, SIGKILL 137"


def missing_command_is_127(workdir: Path) -> str:
    expect(mini(workdir, "/no/such/command"), 127)
    return "a command that does not exist gives 127"


CHECKS = [
    Check(
        "the command runs and prints", "os.fork(), then os.execvp in the child", runs_the_command
    ),
    Check(
        "the command is mini_run's own child",
        "os.fork(): the child execs the command, mini_run itself stays to wait for it",
        is_its_child,
    ),
    Check(
        "its exit status is mini_run's (128 + N for signal N)",
        "os.waitpid, then os.waitstatus_to_exitcode: negative for a signal",
        passes_the_status_on,
    ),
    Check(
        "a command that cannot be run gives 127",
        "execvp raises in the child: catch it there and os._exit(127), or two copies go on",
        missing_command_is_127,
    ),
]
