"""scripts/conformance.py: the OCI conformance harness, on the real suite when it is here.

The runtime-tools validation suite is not part of pyvmm (see docs/conformance.md); the
tests that run it skip, saying so, where /var/cache/pyvmm/runtime-tools-260e151 has not
been built. The TAP reading and the refusals are tested everywhere.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "conformance.py"
_spec = importlib.util.spec_from_file_location("conformance", SCRIPT)
conformance = importlib.util.module_from_spec(_spec)
sys.modules["conformance"] = conformance  # dataclasses look their module up there
_spec.loader.exec_module(conformance)

SUITE = conformance.DEFAULT_SUITE
needs_suite = pytest.mark.skipif(
    not (SUITE / "runtimetest").is_file() or not list(SUITE.glob("validation/*/*.t")),
    reason=f"no built runtime-tools validation suite in {SUITE} (docs/conformance.md)",
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the suite creates containers")

# What runtime-tools' programs print (tap-go): YAML after an assertion, a comment after
# another, a skip directive, and the plan last.
TAP = """TAP version 13
ok 1 - has expected hostname
  ---
  {
    "actual": "mrsdalloway"
  }
  ...
not ok 2 - cpu period is set correctly
# expect: 500000, actual: 100000
ok 3 # SKIP linux.sysctl not set
not ok 4 - kernel memory # TODO not on this kernel
1..4
"""


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600
    )


def test_tap_assertions_carry_their_verdict_and_diagnostic():
    planned, assertions, loose = conformance.parse_tap(TAP)
    assert planned == 4
    assert [a.status for a in assertions] == ["pass", "fail", "skip", "todo"]
    assert '"actual": "mrsdalloway"' in assertions[0].diagnostic
    assert assertions[1].diagnostic == "expect: 500000, actual: 100000"
    assert assertions[2].description == "linux.sysctl not set"
    assert loose == ""


def test_tap_yaml_before_any_assertion_is_the_programs_verdict():
    yaml = '  ---\n  {\n    "error": "Hooks MUST be called in order"\n  }\n  ...\n'
    planned, assertions, loose = conformance.parse_tap(f"TAP version 13\n{yaml}1..0\n")
    assert (planned, assertions) == (0, [])
    assert "Hooks MUST be called in order" in loose


def test_missing_suite_is_one_line_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    r = run_script("--suite", str(tmp_path), "--runtime", "sh", "--results", str(results))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("conformance: no built runtime-tools validation suite in ")
    assert "260e151" in r.stderr
    assert not results.exists()


def test_unknown_runtime_is_one_line(tmp_path):
    r = run_script("--runtime", str(tmp_path / "no-such-runtime"), "--results", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr == f"conformance: runtime not found: {tmp_path / 'no-such-runtime'}\n"


def scratch_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("pyvmm-conformance-*")}


@needs_suite
@needs_root
@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_runc_runs_the_suite_and_nothing_is_left(tmp_path):
    before = scratch_dirs()
    r = run_script("--runtime", "runc", "--test", "create", "--test", "hostname",
                   "--results", str(tmp_path), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "conformance.json").read_text())
    (runc,) = doc["runtimes"]
    assert [t["name"] for t in runc["tests"]] == ["create", "hostname"]
    for t in runc["tests"]:
        assert t["planned"] == len(t["assertions"]) > 0
        assert t["runtime_calls"], "the suite called runc through the wrapper"
        assert t["left_behind"] == []
    totals = runc["totals"]
    assert totals["pass"] + totals["fail"] + totals["skip"] == sum(
        len(t["assertions"]) for t in runc["tests"]
    )
    assert all(set(row) == {"runc"} for row in doc["matrix"].values())
    text = (tmp_path / "conformance.txt").read_text()
    assert f"{'pass':<22}{totals['pass']:>14}" in text
    assert scratch_dirs() == before


@needs_suite
@needs_root
@pytest.mark.root
@pytest.mark.slow
def test_a_hanging_runtime_fails_by_timeout_and_is_killed(tmp_path):
    """A runtime that never answers: the program is killed at --timeout, and so is it."""
    hang = tmp_path / "hang"
    marker = f"pyvmm-conformance-hang-{os.getpid()}"
    hang.write_text(f'#!/bin/bash\n[ "$1" = --version ] && exit 0\nexec -a {marker} sleep 600\n')
    hang.chmod(0o755)
    r = run_script("--runtime", str(hang), "--test", "create", "--timeout", "3",
                   "--results", str(tmp_path / "results"), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "results" / "conformance.json").read_text())
    (run,) = doc["runtimes"][0]["tests"]
    assert run["timed_out"] and run["aborted"] == "timed out"
    assert doc["runtimes"][0]["totals"]["fail"] >= 1
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert alive.stdout == ""
