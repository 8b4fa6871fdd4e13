"""``pyvmm lab``: the course in ``labs/``, one folder per lab, and grading a student's work.

A lab folder holds a ``README.md`` (background, the primary source, a prediction to make
before running, the expected output), a ``check.py`` and the reference solution. The
skeleton a student starts from is cut from that solution: every part the student must
write sits between marker lines,

    # >>> 2: enter the guest and dispatch on the exit   (``/* >>> 2: ... */`` in C and asm)
    ...the reference code...
    # ... the hint goes on (as many such lines as it needs, right after the first)
    #| raise NotImplementedError  (optional: the skeleton's stand-in, without the ``#| ``;
                                  ``//| `` in C)
    # <<<

and the number says in which lab the student writes it. For lab N a block of an earlier
lab keeps its code (the solution of the previous level, as rubber-docker gives it), a
block of lab N becomes a TODO with its hint, and a block of a later lab disappears. So
one annotated ``mini_run.py`` serves every level of the container track, and a
skeleton can never drift from its solution.

Checks are behavioural: each runs the student's code and looks at what it did (the guest
printed its line, the OOM killer struck), never at how the code reads. Each student's
progress is a small record per lab under ``$XDG_STATE_HOME/pyvmm/labs``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmm.errors import PyvmmError

LABS_DIR = Path(__file__).resolve().parent.parent / "labs"
REPO_DIR = LABS_DIR.parent
_BEGIN = re.compile(r"^(?P<indent>\s*)(?:#|//|/\*) >>> (?P<level>\d+): (?P<hint>.*?)(?: \*/)?$")
_END = re.compile(r"^\s*(?:#|//|/\*) <<<(?: \*/)?$")
_STUB = re.compile(r"^(?P<indent>\s*)(?:#|//)\| ?(?P<code>.*)$")
_MORE = re.compile(r"^\s*(?:#|//|/\*|\*) ?\.\.\. (?P<hint>.*?)(?: \*/)?$")  # a hint's next line
NOT_STARTED, IN_PROGRESS, PASSED = "not started", "in progress", "passed"


class LabError(PyvmmError):
    """A lab that does not exist, a working folder that is not there, a bad marker."""


class CheckFailed(Exception):
    """Raised by a check: ``str(e)`` says what the student's code did instead."""


@dataclass(frozen=True)
class Check:
    """One behaviour the student's code must show; ``hint`` is printed when it does not."""

    name: str
    hint: str
    run: Callable[[Path], str | None]


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    detail: str


@dataclass
class LabRecord:
    """One student's progress on one lab, kept between commands."""

    lab: int
    workdir: str
    status: str = IN_PROGRESS
    started: float = 0.0
    last_check: float | None = None
    passed_checks: int = 0
    total_checks: int = 0


@dataclass(frozen=True)
class Lab:
    number: int
    folder: Path
    title: str
    concept: str
    needs: tuple[str, ...]  # "kvm", "root", "cgroup": what the machine must offer
    files: tuple[str, ...]  # solution files, relative to the lab folder
    checks: tuple[Check, ...]

    @property
    def slug(self) -> str:
        return self.folder.name

    def default_workdir(self) -> Path:
        return Path.home() / "pyvmm-labs" / self.slug


# --- the labs --------------------------------------------------------------------------


def _load(folder: Path) -> Lab:
    spec = importlib.util.spec_from_file_location(f"pyvmm_lab_{folder.name}", folder / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Lab(
        number=int(folder.name.split("-", 1)[0]),
        folder=folder,
        title=module.TITLE,
        concept=module.CONCEPT,
        needs=tuple(module.NEEDS),
        files=tuple(module.FILES),
        checks=tuple(module.CHECKS),
    )


def _folders() -> list[Path]:
    """The lab folders, NN-name, in order; the course ships with the source tree."""
    if not LABS_DIR.is_dir():
        raise LabError(f"the course is not here: no {LABS_DIR} (run pyvmm from its checkout)")
    return sorted(p for p in LABS_DIR.iterdir() if re.match(r"\d\d-", p.name) and p.is_dir())


def all_labs() -> list[Lab]:
    return [_load(p) for p in _folders()]


def find_lab(number: int) -> Lab:
    for folder in _folders():
        if int(folder.name[:2]) == number:
            return _load(folder)
    raise LabError(f"there is no lab {number} (pyvmm lab list shows them)")


# --- skeletons and solutions -----------------------------------------------------------


def render(text: str, lab: int, solution: bool) -> str:
    """The file as the student gets it for ``lab``: the skeleton, or the solution.

    Blocks of earlier labs keep their code, blocks of later labs vanish, and a block of
    this lab becomes its TODO (skeleton) or its code (solution).
    """
    out: list[str] = []
    block: tuple[int, str, str, int] | None = None  # level, indent, hint, line number
    code: list[str] = []
    stub: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        begin = _BEGIN.match(line)
        if begin:
            if block:
                raise LabError(f"line {number}: a block opens inside the block of line {block[3]}")
            block = (int(begin["level"]), begin["indent"], begin["hint"], number)
            code, stub = [], []
        elif _END.match(line):
            if not block:
                raise LabError(f"line {number}: a block closes that was never opened")
            level, indent, hint, _ = block
            if level < lab or (level == lab and solution):
                out += code
            elif level == lab:
                python = not line.lstrip().startswith("/*")
                out.append(_todo(indent, lab, hint, python))
                if stub:
                    out += stub
                elif python:
                    out.append(f'{indent}raise NotImplementedError("lab {lab}: the TODO above")\n')
            block = None
        elif block and not code and not stub and (m := _MORE.match(line)):
            block = (*block[:2], f"{block[2]} {m['hint']}", block[3])
        elif block and (m := _STUB.match(line)):
            stub.append(f"{m['indent']}{m['code']}\n")
        elif block:
            code.append(line)
        else:
            out.append(line)
    if block:
        raise LabError(f"line {block[3]}: a block is never closed")
    return "".join(out)


def _todo(indent: str, lab: int, hint: str, python: bool) -> str:
    """The TODO comment standing for a block, wrapped to fit the line length."""
    lines = textwrap.wrap(f"TODO (lab {lab}): {hint}", 88 - len(indent))
    if python:
        return "".join(f"{indent}# {line}\n" for line in lines)
    return f"{indent}/* " + f"\n{indent} * ".join(lines) + " */\n"


def lab_files(lab: Lab, solution: bool) -> dict[str, str]:
    """File name in the working folder -> its text, for ``lab``'s skeleton or solution."""
    return {
        Path(name).name: render((lab.folder / name).read_text(), lab.number, solution)
        for name in lab.files
    }


# --- the student's records -------------------------------------------------------------


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pyvmm" / "labs"


def load_record(lab: Lab) -> LabRecord | None:
    try:
        data = json.loads((_state_dir() / f"{lab.number:02}.json").read_text())
        return LabRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise LabError(f"the progress record of lab {lab.number} is damaged: {e}") from None


def save_record(record: LabRecord) -> None:
    folder = _state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.lab:02}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(record), indent=1) + "\n")
    tmp.replace(path)


def status(lab: Lab) -> str:
    record = load_record(lab)
    return record.status if record else NOT_STARTED


# --- start, check ---------------------------------------------------------------------


def start(lab: Lab, workdir: Path | None) -> Path:
    """Write the skeleton (and the README) into a working folder; never overwrite a file."""
    workdir = (workdir or lab.default_workdir()).absolute()
    files = {"README.md": (lab.folder / "README.md").read_text(), **lab_files(lab, False)}
    present = [name for name in files if (workdir / name).exists()]
    if present:
        raise LabError(
            f"{workdir} already holds {', '.join(present)}: continue there with "
            f"'pyvmm lab check {lab.number} {workdir}', or give another folder"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (workdir / name).write_text(text)
    save_record(LabRecord(lab.number, str(workdir), IN_PROGRESS, started=time.time()))
    return workdir


def workdir_of(lab: Lab, given: Path | None) -> Path:
    if given is None:
        record = load_record(lab)
        given = Path(record.workdir) if record else lab.default_workdir()
    if not given.is_dir():
        raise LabError(f"no working folder {given}: start with 'pyvmm lab start {lab.number}'")
    return given.absolute()


def check(lab: Lab, workdir: Path) -> list[CheckResult]:
    """Run every check of ``lab`` on the student's code in ``workdir``, and record the result."""
    results = []
    for c in lab.checks:
        try:
            results.append(CheckResult(c, True, c.run(workdir) or ""))
        except CheckFailed as e:
            results.append(CheckResult(c, False, str(e)))
        except OSError as e:  # a file the check needs is missing or unreadable
            results.append(CheckResult(c, False, f"the check could not run: {e}"))
    passed = sum(r.passed for r in results)
    record = load_record(lab) or LabRecord(lab.number, str(workdir), started=time.time())
    done = passed == len(results)
    record = dataclasses.replace(
        record,
        workdir=str(workdir),
        status=PASSED if done else IN_PROGRESS,
        last_check=time.time(),
        passed_checks=passed,
        total_checks=len(results),
    )
    save_record(record)
    return results


# --- helpers for check.py files ---------------------------------------------------------


def run_student(
    args: list[str], workdir: Path, timeout: float = 60, **kwargs
) -> subprocess.CompletedProcess:
    """Run the student's program (a Python file is run by pyvmm's interpreter, so that
    ``import vmm`` works); a hang fails the check instead of hanging it, and takes the
    processes the program started with it (its own process group). Its TMPDIR is a
    folder of this run, removed afterwards: a program killed at the timeout, or a
    skeleton that stops half-way, cannot clean up its own temporary files."""
    if args[0].endswith(".py"):
        args = [sys.executable, *args]
    with tempfile.TemporaryDirectory(prefix="pyvmm-lab-", ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o1777)  # like /tmp: a user-namespace child (nobody) works in it too
        env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "TMPDIR": tmp, **kwargs.pop("env", {})}
        return _run_group(args, workdir, timeout, env, **kwargs)


def _run_group(
    args: list[str], workdir: Path, timeout: float, env: dict, **kwargs
) -> subprocess.CompletedProcess:
    with subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, **kwargs,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise CheckFailed(
                f"{' '.join(args[-3:])} did not finish within {timeout:g} s"
            ) from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def build_guest(workdir: Path, files: dict[str, Path | str], targets: list[str]) -> Path:
    """A copy of guest/ in ``workdir`` with the student's files put in (``files``: path in
    guest/ -> the student's file, or the text), ``targets`` made by guest/Makefile's own
    rules; returns the copy's build folder. A failed build fails the check."""
    from vmm import guest

    tree = workdir / "guest-build"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(guest.GUEST_DIR, tree, ignore=shutil.ignore_patterns("build", "workload"))
    for dest, source in files.items():
        text = source.read_text() if isinstance(source, Path) else source
        (tree / dest).write_text(text)
    make = subprocess.run(["make", "-s", "-C", str(tree), *targets], capture_output=True, text=True)
    if make.returncode:
        raise CheckFailed(f"the build failed:\n{tail(make, 8)}")
    return tree / "build"


def tail(proc: subprocess.CompletedProcess, lines: int = 6) -> str:
    """The end of a run's output, for a failure message."""
    text = (proc.stdout + proc.stderr).strip().splitlines()[-lines:]
    return "\n".join(f"      | {line}" for line in text) or "      | (no output)"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)
