"""The course: every lab's skeleton fails its checks and its solution passes them, and
``pyvmm lab`` keeps each student's status.

These run the labs' real checks (real guests on /dev/kvm, real containers as root), so a
lab skips where the machine lacks what it needs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from labmutant import missing as _missing
from vmtest import assert_one_line_error, run_pyvmm

from vmm.course import labs

LABS = labs.all_labs()


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    """Each test its own student: progress records in a tmp XDG_STATE_HOME."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def temporary(monkeypatch) -> Path:
    """A TMPDIR of the test's own, so that what is left in it is the test's doing and
    not another user's of the machine; world-writable like /tmp (lab 14's unprivileged
    child works there), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pyvmm-labtest-"))
    os.chmod(path, 0o1777)
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.slug)
def test_skeleton_fails_and_solution_passes(lab, tmp_path, request, monkeypatch, temporary):
    if reason := _missing(lab):
        pytest.skip(reason)
    if "images" in lab.needs:
        monkeypatch.setenv("PYVMM_ROOT", str(request.getfixturevalue("images_root")))
    skeleton = labs.start(lab, tmp_path / "student")
    results = labs.check(lab, skeleton)
    assert not all(r.passed for r in results), "the skeleton passes its own checks"
    assert labs.status(lab) == labs.IN_PROGRESS
    solution = tmp_path / "solution"
    solution.mkdir()
    for name, text in labs.lab_files(lab, solution=True).items():
        (solution / name).write_text(text)
    results = labs.check(lab, solution)
    failed = [f"{r.check.name}: {r.detail}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert labs.status(lab) == labs.PASSED
    left = sorted(os.listdir(temporary))
    assert not left, f"temporary files left behind: {left}"


def test_every_lab_has_a_readme_checks_and_files():
    assert LABS, "no labs found"
    for lab in LABS:
        assert (lab.folder / "README.md").read_text().startswith(f"# Lab {lab.number}:")
        assert lab.checks and all(c.hint for c in lab.checks)
        texts = [(lab.folder / name).read_text() for name in lab.files]
        assert any(
            labs.render(t, lab.number, solution=False) != labs.render(t, lab.number, solution=True)
            for t in texts
        ), f"lab {lab.number} has nothing for the student to write"


def test_every_skeleton_and_solution_is_python_that_parses():
    for lab in LABS:
        for solution in (False, True):
            for name, text in labs.lab_files(lab, solution).items():
                if name.endswith(".py"):
                    compile(text, f"lab {lab.number} {name} (solution={solution})", "exec")


def test_render_keeps_earlier_levels_stubs_this_one_drops_later():
    text = (
        "a\n# >>> 1: one\nx = 1\n# <<<\n"
        "    # >>> 2: two\n    y = 2\n    #| y = None\n    # <<<\n"
        "# >>> 3: three\nz = 3\n# <<<\nb\n"
    )
    assert labs.render(text, 2, solution=False) == (
        "a\nx = 1\n    # TODO (lab 2): two\n    y = None\nb\n"
    )
    assert labs.render(text, 2, solution=True) == "a\nx = 1\n    y = 2\nb\n"
    assert "NotImplementedError" in labs.render(text, 3, solution=False)


def test_render_refuses_unbalanced_markers():
    with pytest.raises(labs.LabError, match="never closed"):
        labs.render("# >>> 1: open\nx\n", 1, solution=False)
    with pytest.raises(labs.LabError, match="never opened"):
        labs.render("x\n# <<<\n", 1, solution=False)


def test_cli_start_check_status_and_solution(tmp_path, state_home):
    lab = LABS[0]
    env = {"XDG_STATE_HOME": str(state_home)}
    listing = run_pyvmm("lab", "list", env=env).stdout
    assert f"{lab.title}" in listing and "not started" in listing
    work = tmp_path / "work"
    assert run_pyvmm("lab", "start", str(lab.number), str(work), env=env).returncode == 0
    again = run_pyvmm("lab", "start", str(lab.number), str(work), env=env)
    assert_one_line_error(again, "already holds")
    assert "in progress" in run_pyvmm("lab", "list", env=env).stdout
    if not _missing(lab):
        proc = run_pyvmm("lab", "check", str(lab.number), env=env)  # the recorded folder
        assert proc.returncode == 1 and "FAIL" in proc.stdout and "hint:" in proc.stdout
    refused = run_pyvmm("lab", "solution", str(lab.number), env=env, input="n\n")
    assert refused.returncode == 1 and "==>" not in refused.stdout
    shown = run_pyvmm("lab", "solution", str(lab.number), "--yes", env=env)
    assert shown.returncode == 0 and "<<<" not in shown.stdout and "==>" in shown.stdout


def _answer_lab() -> labs.Lab:
    """Lab 1 as the records see it, graded by one check that needs no machine: the
    working folder's ``answer`` file says 42."""

    def answer(workdir):
        labs.require((workdir / "answer").read_text() == "42\n", "the answer is not 42")

    check = labs.Check("the answer is 42", "write 42", answer)
    return dataclasses.replace(LABS[0], checks=(check,))


def test_progress_keeps_the_best_per_folder(tmp_path, state_home):
    lab, right, wrong = _answer_lab(), tmp_path / "right", tmp_path / "wrong"
    for folder, answer in ((right, "42\n"), (wrong, "41\n")):
        folder.mkdir()
        (folder / "answer").write_text(answer)
    assert [r.passed for r in labs.check(lab, right)] == [True]
    assert [r.passed for r in labs.check(lab, wrong)] == [False]
    assert labs.status(lab) == labs.PASSED, "a failure in another folder undid a pass"
    assert labs.workdir_of(lab, None) == wrong, "the folder used last is the current one"
    (right / "answer").write_text("43\n")
    labs.check(lab, right)
    record = labs.load_record(lab)
    assert labs.status(lab) == labs.PASSED, "a later failure in the same folder undid a pass"
    kept = {f.workdir: (f.passed, f.best_checks, f.last_checks) for f in record.folders}
    assert kept == {str(right): (True, 1, 0), str(wrong): (False, 0, 0)}
    env = {"XDG_STATE_HOME": str(state_home)}
    line = next(x for x in run_pyvmm("lab", "list", env=env).stdout.splitlines() if lab.title in x)
    assert line.endswith(labs.PASSED)


def test_progress_record_of_an_older_pyvmm_is_read_and_a_damaged_one_refused(state_home):
    lab, path = LABS[0], state_home / "pyvmm" / "labs" / f"{LABS[0].number:02}.json"
    path.parent.mkdir(parents=True)
    old = {"lab": lab.number, "workdir": "/w", "status": labs.PASSED, "started": 1.0,
           "last_check": 2.0, "passed_checks": 3, "total_checks": 3}  # fmt: skip
    path.write_text(json.dumps(old))
    assert labs.status(lab) == labs.PASSED and labs.load_record(lab).current == "/w"
    env = {"XDG_STATE_HOME": str(state_home)}
    for damaged in ("[1]", '{"lab": 1, "current": "/w", "folders": [{"workdir": 7}]}', "{"):
        path.write_text(damaged)
        assert_one_line_error(run_pyvmm("lab", "list", env=env), "is damaged")


def test_cli_errors_are_one_line(tmp_path):
    assert_one_line_error(run_pyvmm("lab", "check", "99"), "no lab 99")
    assert_one_line_error(
        run_pyvmm("lab", "check", str(LABS[0].number), str(tmp_path / "nope")), "no working folder"
    )
