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
progress is a small record per lab under ``$XDG_STATE_HOME/pyvmm/labs``, each working
folder's best result kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmm.errors import PyvmmError

LABS_DIR = Path(__file__).resolve().parents[2] / "labs"
REPO_DIR = LABS_DIR.parent
_BEGIN = re.compile(r"^(?P<indent>\s*)(?:#|//|/\*) >>> (?P<level>\d+): (?P<hint>.*?)(?: \*/)?$")
_END = re.compile(r"^\s*(?:#|//|/\*) <<<(?: \*/)?$")
_STUB = re.compile(r"^(?P<indent>\s*)(?:#|//)\| ?(?P<code>.*)$")
_MORE = re.compile(r"^\s*(?:#|//|/\*|\*) ?\.\.\. (?P<hint>.*?)(?: \*/)?$")  # a hint's next line
NOT_STARTED, IN_PROGRESS, PASSED = "not started", "in progress", "passed"


class LabError(PyvmmError):
    """A lab that does not exist, a working folder that is not there, a bad marker."""


class CheckFailed(Exception):
    """Raised by a check: ``str(e)`` says what the student's code did instead. ``hint``
    replaces the check's own when the check recognised the mistake: a mistake that fails
    every check at once should not be answered by every check's hint for its own part."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


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
    hint: str = ""  # what to try: the check's hint, or the one its failure gave


@dataclass
class FolderRecord:
    """One working folder's results on one lab. ``passed`` is kept once earned: a later
    failing check (a change being tried, a machine without KVM) does not undo it."""

    workdir: str
    started: float = 0.0
    last_check: float | None = None
    passed: bool = False  # every check passed at once, at some check
    best_checks: int = 0  # the most checks passed at once
    last_checks: int = 0  # passed at the last check
    total_checks: int = 0  # at the last check

    def __post_init__(self) -> None:
        counts = (self.best_checks, self.last_checks, self.total_checks)
        times = (self.started, *(() if self.last_check is None else (self.last_check,)))
        if not (
            isinstance(self.workdir, str)
            and isinstance(self.passed, bool)
            and all(type(n) is int and n >= 0 for n in counts)
            and all(type(t) in (int, float) for t in times)
        ):
            raise TypeError(f"a folder's fields have the wrong types: {self}")


@dataclass
class LabRecord:
    """One student's progress on one lab: each working folder's results, and the folder
    used last (where ``pyvmm lab check N`` goes when given none)."""

    lab: int
    current: str
    folders: list[FolderRecord]

    @property
    def status(self) -> str:
        return PASSED if any(f.passed for f in self.folders) else IN_PROGRESS

    def folder(self, workdir: str) -> FolderRecord:
        """This folder's results, new ones if the folder has none yet."""
        for entry in self.folders:
            if entry.workdir == workdir:
                return entry
        self.folders.append(FolderRecord(workdir, started=time.time()))
        return self.folders[-1]

    @classmethod
    def from_json(cls, data: object) -> LabRecord:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        if "folders" not in data:  # written by pyvmm before it kept folders apart
            data = {
                "lab": data.get("lab"),
                "current": data.get("workdir"),
                "folders": [
                    {
                        "workdir": data.get("workdir"),
                        "started": data.get("started", 0.0),
                        "last_check": data.get("last_check"),
                        "passed": data.get("status") == PASSED,
                        "best_checks": data.get("passed_checks", 0),
                        "last_checks": data.get("passed_checks", 0),
                        "total_checks": data.get("total_checks", 0),
                    }
                ],
            }
        if type(data.get("lab")) is not int or not isinstance(data.get("current"), str):
            raise TypeError("no lab number or current folder")
        if not isinstance(data.get("folders"), list):
            raise TypeError("no list of folders")
        folders = [FolderRecord(**f) for f in data["folders"] if isinstance(f, dict)]
        if len(folders) != len(data["folders"]):
            raise TypeError("a folder that is not a JSON object")
        return cls(data["lab"], data["current"], folders)


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
        record = LabRecord.from_json(
            json.loads((_state_dir() / f"{lab.number:02}.json").read_text())
        )
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise LabError(f"the progress record of lab {lab.number} is damaged: {e}") from None
    if record.lab != lab.number:
        raise LabError(f"the progress record of lab {lab.number} is lab {record.lab}'s")
    return record


def save_record(record: LabRecord) -> None:
    folder = _state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record.lab:02}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(record), indent=1) + "\n")
    tmp.replace(path)


def _record_in(lab: Lab, workdir: Path, change: Callable[[FolderRecord], None]) -> LabRecord:
    """Change this folder's results in the lab's record, which now names it as the
    current folder. Under a lock: checks in two folders may end at the same time, and
    neither may lose the other's result."""
    folder = _state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{lab.number:02}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = load_record(lab) or LabRecord(lab.number, str(workdir), [])
        change(record.folder(str(workdir)))
        record.current = str(workdir)
        save_record(record)
    return record


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
    _record_in(lab, workdir, lambda entry: None)
    return workdir


def workdir_of(lab: Lab, given: Path | None) -> Path:
    if given is None:
        record = load_record(lab)
        given = Path(record.current) if record else lab.default_workdir()
    if not given.is_dir():
        raise LabError(f"no working folder {given}: start with 'pyvmm lab start {lab.number}'")
    return given.absolute()


def run_checks(lab: Lab, workdir: Path) -> Iterator[CheckResult]:
    """Each check of ``lab`` on the student's code in ``workdir``, run as it is asked for,
    nothing recorded: the mutation tests stop at the failure they expect (a check may
    boot guests or run containers, seconds each)."""
    for c in lab.checks:
        try:
            yield CheckResult(c, True, c.run(workdir) or "")
        except CheckFailed as e:
            yield CheckResult(c, False, str(e), e.hint or c.hint)
        except OSError as e:  # a file the check needs is missing or unreadable
            yield CheckResult(c, False, f"the check could not run: {e}", c.hint)


def check(lab: Lab, workdir: Path) -> list[CheckResult]:
    """Run every check of ``lab`` on the student's code in ``workdir``, and record the result."""
    results = list(run_checks(lab, workdir))
    passed = sum(r.passed for r in results)

    def record(entry: FolderRecord) -> None:
        entry.last_check = time.time()
        entry.passed = entry.passed or passed == len(results)
        entry.best_checks = max(entry.best_checks, passed)
        entry.last_checks, entry.total_checks = passed, len(results)

    _record_in(lab, workdir, record)
    return results


# --- helpers for check.py files ---------------------------------------------------------


_RUNS: dict[tuple, object] = {}


def once(workdir: Path, files: tuple[str, ...], run: Callable[[], object]) -> object:
    """``run()``'s result, run once per content of the student's ``files`` in ``workdir``
    in this process: checks that grade one run (a guest built and booted, a container:
    seconds) share it, and a changed file runs it anew. A failure is kept as well."""
    key = (str(workdir), *((workdir / name).read_bytes() for name in files))
    if key not in _RUNS:
        try:
            _RUNS[key] = run()
        except CheckFailed as e:
            _RUNS[key] = e
    if isinstance(_RUNS[key], CheckFailed):
        raise _RUNS[key]
    return _RUNS[key]


_IDLE_TICKS = 5  # CPU time (clock ticks, 10 ms each) under which a run counts as idle


def run_student(
    args: list[str], workdir: Path, timeout: float = 60, idle: float | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run the student's program to its end; a hang fails the check instead of hanging
    it, and takes the processes the program started with it (its own process group).
    With ``idle``, a program that uses next to no CPU for that long is hung too: it
    waits for what will not come (a guest halted for an interrupt that is never
    delivered). A run that is busy but slowed by a loaded host uses CPU all the while,
    so this catches a hang in seconds where the timeout must allow for the load."""
    with start_student(args, workdir, **kwargs) as proc:
        start = active = time.monotonic()
        used = _group_cpu(proc.pid)
        while True:
            try:
                out, err = proc.communicate(timeout=timeout if idle is None else 0.25)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if idle is not None and (cpu := _group_cpu(proc.pid)) > used + _IDLE_TICKS:
                    active, used = now, cpu
                if now - start < timeout and (idle is None or now - active < idle):
                    continue
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                why = f"did not finish within {timeout:g} s"
                if now - start < timeout:
                    why = f"used no CPU for {idle:g} s without finishing"
                raise CheckFailed(f"{' '.join(proc.args[-3:])} {why}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _group_cpu(group: int) -> int:
    """The CPU time of process group ``group``'s processes and of their children that
    they waited for, in clock ticks (proc(5), /proc/PID/stat: pgrp, utime to cstime)."""
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == group:
                total += sum(map(int, fields[11:15]))
    return total


@contextlib.contextmanager
def start_student(args: list[str], workdir: Path, **kwargs) -> Iterator[subprocess.Popen]:
    """The student's program, running, for a check that looks at it from outside while
    it runs (its cgroup, its open files) as well as at its output. A Python file is run
    by pyvmm's interpreter, so that ``import vmm`` works; the program is a session of its
    own, killed with everything it started on the way out. Its TMPDIR is a folder of
    this run, removed afterwards: a program killed at the timeout, or a skeleton that
    stops half-way, cannot clean up its own temporary files."""
    if args[0].endswith(".py"):
        args = [sys.executable, *args]
    with tempfile.TemporaryDirectory(prefix="pyvmm-lab-", ignore_cleanup_errors=True) as tmp:
        os.chmod(tmp, 0o1777)  # like /tmp: a user-namespace child (nobody) works in it too
        env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "TMPDIR": tmp, **kwargs.pop("env", {})}
        with subprocess.Popen(
            args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env, start_new_session=True, **kwargs,
        ) as proc:  # fmt: skip
            try:
                yield proc
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()


def build_guest(workdir: Path, files: dict[str, Path | str], targets: list[str]) -> Path:
    """A copy of guest/ in ``workdir`` with the student's files put in (``files``: path in
    guest/ -> the student's file, or the text), ``targets`` made by guest/Makefile's own
    rules; returns the copy's build folder. A failed build fails the check."""
    from vmm.guests import tiny as guest

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


def pyvmm(*args: str) -> subprocess.Popen:
    """``pyvmm ARGS`` as a lab's own program starts it: its guest's output on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "vmm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def pyvmm_on(state: Path, *args: str, timeout: float = 120) -> str:
    """``pyvmm ARGS`` itself (not the student's code) on the state root ``state``, as a
    check runs it to set up or to look; its stdout, or the check fails saying so."""
    proc = subprocess.run(
        [sys.executable, "-m", "vmm", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYVMM_ROOT": str(state)}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode:
        raise CheckFailed(f"pyvmm {' '.join(args[:2])} failed (not your code):\n{tail(proc)}")
    return proc.stdout


def read_until(proc: subprocess.Popen, line: re.Pattern[bytes], count: int) -> bytes:
    """The guest's output until ``count`` lines matching ``line`` (or until it ended)."""
    seen = b""
    while len(line.findall(seen)) < count:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        seen += chunk
    return seen


def tail(proc: subprocess.CompletedProcess, lines: int = 6) -> str:
    """The end of a run's output, for a failure message."""
    text = (proc.stdout + proc.stderr).strip().splitlines()[-lines:]
    return "\n".join(f"      | {line}" for line in text) or "      | (no output)"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)
