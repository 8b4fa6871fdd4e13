"""Fixtures for the VM tests: the bundled guest, built once per session."""

import subprocess
from pathlib import Path

import pytest
from vmtest import GUEST


@pytest.fixture(scope="session")
def guest_build() -> Path:
    """The bundled guest, built once per test session with the system's gcc."""
    subprocess.run(["make", "-s", "-C", str(GUEST)], check=True)
    return GUEST / "build"
