"""Lab 8's checks: mini_run runs a command as a child and reports its exit status."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mini-run"))
from minicheck import FILES, NEEDS, expect, mini  # noqa: E402, F401

from vmm.lab import Check  # noqa: E402

TITLE = "mini-run 1: fork and exec"
CONCEPT = "a container is a process: fork, exec, wait, exit status"


def runs_the_command(workdir: Path) -> str:
    expect(mini(workdir, "/bin/echo", "hello from mini-run"), 0, "hello from mini-run")
    return "/bin/echo printed its line"


def passes_the_status_on(workdir: Path) -> str:
    expect(mini(workdir, "/bin/sh", "-c", "exit 7"), 7)
    expect(mini(workdir, "/bin/sh", "-c", "kill -9 $$"), 137)
    return "exit 7 gives 7, SIGKILL gives 137"


def missing_command_is_127(workdir: Path) -> str:
    expect(mini(workdir, "/no/such/command"), 127)
    return "a command that does not exist gives 127"


CHECKS = [
    Check(
        "the command runs and prints", "os.fork(), then os.execvp in the child", runs_the_command
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
