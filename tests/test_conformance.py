"""scripts/conformance.py: the OCI conformance harness, on the real suite when it is here.

The runtime-tools validation suite is not part of pyvmm (see docs/conformance.md):
scripts/setup.sh --all builds it from ../shared/conformance/ into /var/cache/pyvmm; the
tests that run it skip, saying so, where that source is absent or not built. The TAP
reading and the refusals are tested everywhere.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "conformance.py"
_spec = importlib.util.spec_from_file_location("conformance", SCRIPT)
conformance = importlib.util.module_from_spec(_spec)
sys.modules["conformance"] = conformance  # dataclasses look their module up there
_spec.loader.exec_module(conformance)

SUITE = conformance.default_suite()
needs_suite = pytest.mark.skipif(
    SUITE is None or bool(conformance._missing(SUITE)),
    reason=f"no ../shared/conformance/{conformance.SOURCE_NAME} beside the repository"
    if SUITE is None
    else f"the runtime-tools suite is not built in {SUITE}: scripts/setup.sh --all builds it",
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


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600, env=env
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


def test_a_clone_outside_the_workplace_has_nothing_to_build_and_says_so(tmp_path):
    """Without ../shared/conformance/ beside the repository, --build does nothing and
    says the tests skip; a run says in one line that there is no suite."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    script = shutil.copy(SCRIPT, tmp_path / "repo" / "scripts")
    env = {**os.environ, "PYVMM_CONFORMANCE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, script, "--build"], capture_output=True, text=True,
                       env=env, timeout=60)  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr.startswith("conformance: no ../shared/conformance/runtime-tools-260e151")
    assert not (tmp_path / "cache").exists()
    r = subprocess.run([sys.executable, script, "--runtime", "sh"], capture_output=True,
                       text=True, env=env, timeout=60)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("conformance: no built runtime-tools validation suite")


def test_unknown_runtime_is_one_line(tmp_path):
    r = run_script("--runtime", str(tmp_path / "no-such-runtime"), "--results", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr == f"conformance: runtime not found: {tmp_path / 'no-such-runtime'}\n"


@pytest.fixture
def scratch() -> Path:
    """A TMPDIR of the test's own for the script's scratch folders, searchable by all as
    /tmp is (a user-namespace container's root reaches its bundle there; tmp_path's
    parents are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pyvmm-conformance-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def run_suite(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    """The script on the real suite, its scratch folders in ``tmp`` (TMPDIR), so that
    what is left there is this run's; while another run on the machine (another copy of
    the tests, the other pytest-xdist worker) holds the script's machine-wide lock, it
    waits its turn: the suite's cgroup names are fixed, two runs cannot overlap."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    deadline = time.monotonic() + 900
    while True:
        r = run_script(*args, env=env)
        if "another conformance run holds" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(2)


@needs_suite
@needs_root
@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_runc_runs_the_suite_and_nothing_is_left(tmp_path, scratch):
    r = run_suite("--runtime", "runc", "--test", "create", "--test", "hostname",
                  "--results", str(tmp_path), "--quiet", tmp=scratch)  # fmt: skip
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
    assert not list(scratch.iterdir()), "scratch folders left behind"


@needs_suite
@needs_root
@pytest.mark.root
@pytest.mark.slow
def test_a_hanging_runtime_fails_by_timeout_and_is_killed(tmp_path, scratch):
    """A runtime that never answers: the program is killed at --timeout, and so is it."""
    hang = tmp_path / "hang"
    marker = f"pyvmm-conformance-hang-{os.getpid()}"
    hang.write_text(f'#!/bin/bash\n[ "$1" = --version ] && exit 0\nexec -a {marker} sleep 600\n')
    hang.chmod(0o755)
    r = run_suite("--runtime", str(hang), "--test", "create", "--timeout", "3",
                  "--results", str(tmp_path / "results"), "--quiet", tmp=scratch)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "results" / "conformance.json").read_text())
    (run,) = doc["runtimes"][0]["tests"]
    assert run["timed_out"] and run["aborted"] == "timed out"
    assert doc["runtimes"][0]["totals"]["fail"] >= 1
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert alive.stdout == ""


# Programs crun passes on this host, pyvmm-runtime too, and runc not always (see
# docs/conformance.md): quick ones, each a different part of the runtime.
BESIDE_RUNC = ["create", "hostname", "kill", "state", "linux_seccomp", "linux_rootfs_propagation",
               "linux_cgroups_devices", "process_capabilities_fail"]  # fmt: skip


@needs_suite
@needs_root
@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("runc"), reason="runc is not installed")
def test_pyvmm_runtime_passes_beside_runc_in_one_run(tmp_path, scratch):
    runtime = Path(sys.executable).parent / "pyvmm-runtime"
    tests = [a for name in BESIDE_RUNC for a in ("--test", name)]
    r = run_suite("--runtime", "runc", "--runtime", f"pyvmm-runtime={runtime}", *tests,
                  "--timeout", "120", "--results", str(tmp_path), "--quiet",
                  tmp=scratch)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "conformance.json").read_text())
    runs = {rt["label"]: {t["name"]: t for t in rt["tests"]} for rt in doc["runtimes"]}
    assert set(runs) == {"runc", "pyvmm-runtime"} and set(runs["runc"]) == set(BESIDE_RUNC)
    failed = {name: t["aborted"] or [a["description"] for a in t["assertions"]
                                     if a["status"] == "fail"]
              for name, t in runs["pyvmm-runtime"].items()}  # fmt: skip
    assert not {name: why for name, why in failed.items() if why}
    assert all(t["left_behind"] == [] for t in runs["pyvmm-runtime"].values())
