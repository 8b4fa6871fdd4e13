"""OCI hooks: programs an engine asks the runtime to run at points of a container's life.

Each gets the container's state JSON on its stdin (runtime-spec config.md "POSIX-
platform Hooks"), exactly the ``env`` it lists, and ``args`` with ``args[0]`` as its
argv[0]. A hook that fails or outlives its ``timeout`` fails the operation, except
``poststart`` and ``poststop``, whose failures the runtime only reports (runtime.md).
``runtime.py`` and ``init.py`` call ``run`` at the points the spec names.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmm.errors import PyvmmError

if TYPE_CHECKING:  # a type only: the state (State.hooks) is read without it
    from vmm.container.linux.exeseal import Trampoline


@dataclass
class Hook:
    """One entry of config.json's ``hooks`` (``spec.py`` parses them); a container's
    state keeps its ``poststart`` and ``poststop`` ones, so ``start`` and ``delete``
    read them without the rest of the spec."""

    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    timeout: int | None = None


class HookError(PyvmmError):
    exit_code = 1


def run(hooks: list[Hook], state: dict, point: str,
        trampoline: Trampoline | None = None) -> None:  # fmt: skip
    """Run ``hooks`` one after another, each fed ``state``; the first failure raises.

    From a process in the container's namespaces (``createContainer``,
    ``startContainer``), each is exec'd through ``trampoline`` (``exeseal.py``).
    """
    if hooks:
        data = json.dumps(state).encode()
        for hook in hooks:
            _run_one(hook, data, point, trampoline)


def run_warning(hooks: list[Hook], state: dict, point: str) -> None:
    """``poststart`` and ``poststop``: a failing hook is a warning on stderr, and the
    rest still run (runtime.md "Lifecycle": as if it had succeeded)."""
    if hooks:
        data = json.dumps(state).encode()
        for hook in hooks:
            try:
                _run_one(hook, data, point)
            except HookError as e:
                sys.stderr.write(f"pyvmm-runtime: warning: {e}\n")


def _run_one(hook: Hook, data: bytes, point: str, trampoline: Trampoline | None = None) -> None:
    import subprocess  # only containers with hooks pay for it

    executable, argv, keep = hook.path, hook.args or [hook.path], ()
    if trampoline is not None:
        executable, argv = trampoline.command(hook.path, argv)
        keep = (trampoline.fd,)
    try:
        done = subprocess.run(
            argv, executable=executable, input=data, env=dict(_pairs(hook.env)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=hook.timeout,
            close_fds=True, pass_fds=keep,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise HookError(f"{point} hook {hook.path} timed out after {hook.timeout}s") from None
    except OSError as e:
        raise HookError(f"{point} hook {hook.path}: {e.strerror}") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise HookError(f"{point} hook {hook.path} failed with status {done.returncode}"
                        + (f": {why[-1]}" if why else ""))  # fmt: skip


def _pairs(env: list[str]):
    for item in env:
        key, _, value = item.partition("=")
        yield key, value
