"""The course's checks grade the mechanism: every lab has wrong-but-plausible solutions
(``tests/lab_mutants/labNN.py``) that its checks must fail, each with a message that
names what is missing, while the reference solution passes (``test_labs.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from labmutant import Mutant, missing

from vmm.course import labs

MUTANT_DIR = Path(__file__).parent / "lab_mutants"


def _mutants_of(lab: labs.Lab) -> list[Mutant]:
    path = MUTANT_DIR / f"lab{lab.number:02}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"lab_mutants_{lab.number:02}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MUTANTS)


LABS = labs.all_labs()
CASES = [(lab, m) for lab in LABS for m in _mutants_of(lab)]


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.slug)
def test_every_lab_has_two_wrong_solutions(lab):
    assert len(_mutants_of(lab)) >= 2, f"lab {lab.number} has fewer than two mutants"


@pytest.mark.parametrize(("lab", "mutant"), CASES, ids=[f"{lab.slug}-{m.name}" for lab, m in CASES])
def test_check_fails_a_wrong_solution(lab, mutant, tmp_path, request, monkeypatch):
    if reason := missing(lab):
        pytest.skip(reason)
    if "images" in lab.needs:
        monkeypatch.setenv("PYVMM_ROOT", str(request.getfixturevalue("images_root")))
    folder = tmp_path / "wrong"
    folder.mkdir()
    for name, text in labs.lab_files(lab, solution=True).items():
        (folder / name).write_text(text)
    mutant.apply(folder)
    # The checks run in order until one fails naming the mechanism: the checks after it
    # could only add failures, and the assertion asks for one.
    said = []
    for result in labs.run_checks(lab, folder):
        if not result.passed:
            said.append(f"{result.check.name}: {result.detail}")
            if mutant.expect.lower() in said[-1].lower():
                return
    assert said, f"lab {lab.number}'s checks pass the wrong solution {mutant.name!r}"
    raise AssertionError(f"no failure names {mutant.expect!r}:\n" + "\n".join(said))
