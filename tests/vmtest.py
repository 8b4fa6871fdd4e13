"""Helpers the VM tests share: /dev/kvm, the repository root, running the real ``pyvmm``.

A module of its own, not conftest.py: tests/container has a conftest of its own, and a
``from conftest import`` would find whichever directory pytest put first on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUEST = ROOT / "guest"


def kvm_usable() -> bool:
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="needs a usable /dev/kvm")


def run_pyvmm(*args: str, env: dict | None = None, timeout: float = 120, **kw):
    """Run the real CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "vmm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        **kw,
    )


def assert_one_line_error(proc, *fragments: str, status: int = 2) -> None:
    """A clean failure: the given status, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@contextlib.contextmanager
def immutable(path):
    """The file with the immutable attribute, which even root cannot open for writing."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs root and a filesystem with the immutable attribute")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
