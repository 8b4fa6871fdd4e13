#!/usr/bin/env python3
"""OCI runtime conformance, measured: runtime-tools' validation suite against several runtimes.

opencontainers/runtime-tools' ``validation/`` programs are the conformance suite the OCI
runtimes use (crun's CI runs it). This script runs every one of them against each runtime
named, one runtime after the other in one run, reads their TAP output and writes pass,
fail and skip counts side by side plus a per-assertion matrix, as JSON and as text::

    sudo python3 scripts/conformance.py --suite DIR --runtime runc --runtime crun \\
        --runtime .venv/bin/pyvmm-runtime [--test default --test create] [--results DIR]

The suite is not part of pyvmm and nothing downloads it. Its source comes with the
project's workplace: ``../shared/conformance/runtime-tools-260e151.tar.gz`` beside the
repository (runtime-tools at commit 260e151, the last whose Go is Debian 12's 1.19, its
dependencies vendored). ``--build`` (run by ``scripts/setup.sh --all``) builds it once
per machine with Debian's ``golang-go`` and its own Makefile into a cache outside the
repository, ``/var/cache/pyvmm/runtime-tools-<hash of the tarball>``, the default
``--suite``. Where the tarball is absent (a clone outside the workplace) ``--build`` says
so and does nothing, and a run stops with one line saying what is missing.

Why each piece is the way it is:

- Each test program runs under ``unshare --mount`` with /sys/fs/cgroup/unified unmounted
  in that private namespace when the host has it (cgroup "hybrid" mode, which crun 1.8.1
  refuses); all runtimes get the same treatment so the counts compare. The runtime's own
  mounts die with that namespace.
- The runtime is called through a wrapper that adds ``--root`` (a state directory of this
  run only, so other containers on the host are neither seen nor touched) and logs every
  call, so a failure can be read next to the commands that led to it.
- This process is a child subreaper: a container whose ``create`` returned is reparented
  here, so after each test anything still alive once ``delete --force`` has run is found,
  reported as left behind and killed. The suite's fixed cgroup names and the container
  ids it used are looked for in every cgroup hierarchy likewise. A test that outlives
  ``--timeout`` is killed and counted as a failure.
- One run at a time (a lock in /run): the suite's cgroup names are fixed, so a second
  run would take the first one's cgroups for leftovers. Anything else that runs the
  suite's programs at the same time on the host spoils both (see docs/conformance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

SOURCE_NAME = "runtime-tools-260e151.tar.gz"  # in ../shared/conformance/ (see its README)
CACHE_ROOT = Path(os.environ.get("PYVMM_CONFORMANCE_CACHE", "/var/cache/pyvmm"))
# How the cache entry is made; part of its key, with the tarball's own hash.
RECIPE = b"tar xzf; make runtimetest validation-executables; golang-go 1.19\n"
HYBRID_UNIFIED = Path("/sys/fs/cgroup/unified")
# Two runs would take each other's cgroups (the suite's names are fixed) for leftovers.
LOCK = Path("/run/pyvmm-conformance.lock")
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
# cgroups/cgroups.go at 260e151: AbsCgroupPath and the first element of RelCgroupPath.
SUITE_CGROUP_NAMES = frozenset({"cgrouptest", "testdir"})
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
# TAP 13: "ok 3 - description # SKIP reason"; tap-go writes no "-" before a directive.
TAP_LINE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*?)\s*(?:#\s*(SKIP|TODO)\b\s*(.*))?$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)")
CLEANUP_TIMEOUT = 30


class ConformanceError(Exception):
    """A problem with the request or the host, told in one line."""


@dataclasses.dataclass
class Assertion:
    number: int
    status: str  # pass, fail, skip or todo
    description: str
    diagnostic: str = ""


@dataclasses.dataclass
class TestRun:
    """One validation program's run against one runtime."""

    name: str
    exit_status: int | None
    timed_out: bool
    seconds: float
    planned: int | None
    assertions: list[Assertion]
    diagnostic: str  # YAML printed before any assertion
    stderr: str
    runtime_calls: list[str]
    left_behind: list[str]

    @property
    def aborted(self) -> str:
        """Why the program as a whole failed beyond its assertions, or ''."""
        if self.timed_out:
            return "timed out"
        if self.planned is None:
            return f"no TAP plan (exit status {self.exit_status})"
        if len(self.assertions) < self.planned:
            return f"{len(self.assertions)} of {self.planned} planned assertions ran"
        if self.exit_status not in (0, None) and not self.count("fail"):
            return f"exit status {self.exit_status}"
        return ""

    def count(self, status: str) -> int:
        return sum(a.status == status for a in self.assertions)

    @property
    def passed(self) -> bool:
        return not self.aborted and not self.count("fail")


@dataclasses.dataclass
class RuntimeResult:
    label: str
    path: str
    version: str
    tests: list[TestRun]

    def totals(self) -> dict[str, int]:
        t = {s: sum(r.count(s) for r in self.tests) for s in ("pass", "fail", "skip", "todo")}
        # A program that stopped early counts once more as a failure: what it did not
        # run was not passed.
        t["fail"] += sum(bool(r.aborted) for r in self.tests)
        t["programs_passed"] = sum(r.passed for r in self.tests)
        t["programs"] = len(self.tests)
        t["left_behind"] = sum(len(r.left_behind) for r in self.tests)
        return t


def parse_tap(text: str) -> tuple[int | None, list[Assertion], str]:
    """The plan, the assertions and what YAML came before any assertion.

    A YAML block or a comment belongs to the assertion line before it; some programs
    (hooks) print their only verdict as YAML with no assertion at all.
    """
    planned = None
    out: list[Assertion] = []
    loose: list[str] = []
    yaml: list[str] | None = None
    for line in text.splitlines():
        if yaml is not None:
            if line.strip() == "...":
                if out:
                    out[-1].diagnostic = "\n".join(yaml).strip()
                else:
                    loose.append("\n".join(yaml).strip())
                yaml = None
            else:
                yaml.append(line[2:] if line.startswith("  ") else line)
            continue
        if line.strip() == "---":
            yaml = []
            continue
        if line.startswith("#") and out:  # a comment: tap-go's "expect: x, actual: y"
            out[-1].diagnostic = f"{out[-1].diagnostic}\n{line[1:].strip()}".strip()
            continue
        if m := TAP_PLAN.match(line):
            planned = int(m.group(1))
            continue
        m = TAP_LINE.match(line)
        if not m:
            continue
        ok, number, desc, directive, reason = m.groups()
        if directive == "SKIP":
            status, desc = "skip", reason or desc
        elif directive == "TODO":
            status = "todo"
        else:
            status = "pass" if ok == "ok" else "fail"
        out.append(Assertion(int(number or len(out) + 1), status, desc))
    return planned, out, "\n".join(loose)


def assertion_keys(run: TestRun) -> list[str]:
    """Stable names across runtimes: program and description, numbered when repeated."""
    seen: dict[str, int] = {}
    keys = []
    for a in run.assertions:
        base = f"{run.name}: {a.description or '#' + str(a.number)}"
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base} [{seen[base]}]")
    return keys


def private_namespace(argv: list[str]) -> list[str]:
    """argv run in a private mount namespace, without cgroup v2's hybrid mount."""
    if not os.path.ismount(HYBRID_UNIFIED):
        return ["unshare", "--mount", "--propagation", "private", *argv]
    script = f'umount {HYBRID_UNIFIED} && exec "$0" "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, *argv]


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise ConformanceError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def orphans() -> list[int]:
    """Processes whose parent is this one: containers (and helpers) reparented here."""
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "(gone)"
    return shlex.join(p.decode(errors="replace") for p in raw.split(b"\0") if p) or f"[{comm}]"


def reap_orphans() -> list[str]:
    """Kill and reap what the test left running; say what it was."""
    left: list[str] = []
    for _ in range(50):
        pids = orphans()
        if not pids:
            break
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            what = f"process {pid}: {cmdline(pid)}"
            if state != "Z" and what not in left:
                left.append(what)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
    return left


def cgroup_mounts() -> dict[Path, str]:
    """Every cgroup hierarchy mounted here and its file system type."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, after = line.split(" - ")
        if after.split()[0] in ("cgroup", "cgroup2"):
            mounts[Path(before.split()[4])] = after.split()[0]
    return mounts


def cgroup_roots() -> list[Path]:
    """Every cgroup hierarchy, and this process's own cgroup in each (relative paths)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[frozenset(controllers.removeprefix("name=").split(","))] = path
    roots = []
    for mount, fstype in cgroup_mounts().items():
        roots.append(mount)
        key = frozenset({""}) if fstype == "cgroup2" else frozenset(mount.name.split(","))
        if own.get(key, "/") != "/":
            roots.append(mount / own[key].lstrip("/"))
    return roots


def suite_cgroups(ids: set[str]) -> set[Path]:
    """The suite's cgroups (its fixed names and the container ids) with their subtrees."""
    names = SUITE_CGROUP_NAMES | ids
    found: set[Path] = set()
    for root in cgroup_roots():
        queue = deque([(root, 0)])
        while queue:
            d, depth = queue.popleft()
            try:
                subdirs = [Path(e.path) for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for s in subdirs:
                if s.name in names or d in found:
                    found.add(s)
                    queue.append((s, depth))
                elif depth < 3:
                    queue.append((s, depth + 1))
    return found


def remove_cgroups(new: set[Path]) -> list[str]:
    """Kill what is in the cgroups a test left and rmdir them, deepest first."""
    mounts = cgroup_mounts()
    for d in new:
        try:
            for pid in Path(d, "cgroup.procs").read_text().split():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    time.sleep(0.2 if new else 0)
    for d in sorted(new, key=lambda p: len(p.parts), reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass
    where: dict[str, list[str]] = {}
    for d in sorted(new):
        if d.parent not in new:
            hierarchy = next(m for m in mounts if d.is_relative_to(m))
            rel = str(d.relative_to(hierarchy)) + (" (could not remove)" if d.exists() else "")
            where.setdefault(rel, []).append(hierarchy.name)
    return [f"cgroup {rel} in {', '.join(h)}" for rel, h in where.items()]


def wrapper(scratch: Path, label: str, runtime: Path) -> Path:
    """The executable the suite calls: the runtime with this run's --root, logging calls."""
    path = scratch / "bin" / label
    path.parent.mkdir()
    log, state = scratch / "calls.log", scratch / "state"
    path.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(str(runtime))} --root {shlex.quote(str(state))} "$@"\n'
    )
    path.chmod(0o755)
    return path


def clean_up(scratch: Path, command: Path, cgroups_before: set[Path]) -> list[str]:
    """Force-delete what the runtime still lists, then kill and remove what remains."""
    left = []
    state = scratch / "state"
    for entry in sorted(state.iterdir()) if state.is_dir() else []:
        left.append(f"container {entry.name} still in the runtime's state after the test")
        subprocess.run(
            private_namespace([str(command), "delete", "--force", entry.name]),
            capture_output=True,
            timeout=CLEANUP_TIMEOUT,
            check=False,
        )
    left += reap_orphans()
    log = scratch / "calls.log"
    ids = set(UUID.findall(log.read_text())) if log.exists() else set()
    left += remove_cgroups(suite_cgroups(ids) - cgroups_before)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4].startswith(str(scratch)):
            left.append(f"mount {line.split()[4]}")
            subprocess.run(["umount", "-l", line.split()[4]], check=False)
    return left


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_one(suite: Path, program: Path, command: Path, scratch: Path, timeout: float) -> TestRun:
    tmp = scratch / "tmp"
    tmp.mkdir(mode=0o755)
    env = {**os.environ, "RUNTIME": str(command), "TMPDIR": str(tmp)}
    cgroups_before = suite_cgroups(set())
    start = time.monotonic()
    proc = subprocess.Popen(
        private_namespace([str(program)]),
        cwd=suite,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid)
        out, err = proc.communicate()
    except BaseException:
        # Ctrl-C: the test runs in a session of its own, so the signal did not reach it.
        kill_group(proc.pid)
        proc.wait()
        clean_up(scratch, command, cgroups_before)
        raise
    seconds = time.monotonic() - start
    log = scratch / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    left = clean_up(scratch, command, cgroups_before)
    shutil.rmtree(tmp, ignore_errors=True)
    log.unlink(missing_ok=True)
    planned, assertions, loose = parse_tap(out.decode(errors="replace"))
    if not assertions and not timed_out and planned in (0, None):
        # Some programs assert nothing. The lifecycle ones (hooks, prestart, poststop...)
        # print a YAML error when the runtime got it wrong and nothing when it did not;
        # the *_fail ones, and any that stop on the way, exit 1 with the error on stderr.
        ok = proc.returncode == 0 and not loose
        stderr = err.decode(errors="replace")
        why = loose or ("" if ok else f"exit status {proc.returncode}: {stderr}")
        assertions = [Assertion(1, "pass" if ok else "fail", "(whole program)", why)]
        planned = 1
    return TestRun(
        program.stem,
        proc.returncode,
        timed_out,
        round(seconds, 2),
        planned,
        assertions,
        loose,
        err.decode(errors="replace")[-4000:],
        calls,
        left,
    )


def resolve(spec: str) -> tuple[str, Path]:
    """LABEL=PATH, a path, or a name on PATH."""
    label, _, where = spec.rpartition("=")
    found = shutil.which(where)
    if not found:
        raise ConformanceError(f"runtime not found: {where}")
    return label or Path(where).name, Path(found).resolve()


def version(path: Path) -> str:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def source_tarball() -> Path | None:
    """The suite's source in the workplace's ``shared/conformance/``, beside the
    repository (or a folder above it); None in a clone outside the workplace."""
    repo = Path(__file__).resolve().parent.parent
    for folder in repo.parents:
        if (folder / "shared" / "conformance" / SOURCE_NAME).is_file():
            return folder / "shared" / "conformance" / SOURCE_NAME
    return None


def default_suite() -> Path | None:
    """Where ``--build`` puts the suite: keyed by the tarball's sha256 and the recipe,
    so a changed tarball is built anew. None without the tarball."""
    tarball = source_tarball()
    if tarball is None:
        return None
    digest = hashlib.sha256(RECIPE + tarball.read_bytes()).hexdigest()
    return CACHE_ROOT / f"runtime-tools-{digest[:16]}"


def _missing(suite: Path) -> list[str]:
    """What a built suite has and ``suite`` lacks."""
    missing = [
        p for p in ("runtimetest", f"rootfs-{go_arch()}.tar.gz") if not (suite / p).is_file()
    ]
    return missing + ([] if any(suite.glob("validation/*/*.t")) else ["validation/*/*.t"])


def build(say) -> Path | None:
    """Build the suite into the cache unless it is there (one build at a time: another
    caller waits on the lock, then finds it built); the suite, or None without the
    tarball."""
    suite = default_suite()
    if suite is None or not _missing(suite):
        return suite
    if not shutil.which("go"):
        raise ConformanceError("building the suite needs Go: apt-get install golang-go")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(f"{suite}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"conformance: waiting for another build of {suite} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _missing(suite):
            _build(source_tarball(), suite, say)
    return suite


def _build(tarball: Path, suite: Path, say) -> None:
    """Unpack and ``make`` in ``suite``.tmp, renamed to ``suite`` once complete. Go
    works offline (vendored modules, GOPROXY=off) with its caches in the work tree,
    removed afterwards: nothing is left in the builder's home."""
    work = Path(f"{suite}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    log = work.parent / f"{suite.name}.log"
    say(f"conformance: building {tarball.name} into {suite} (minutes, once; log: {log})")
    env = {**os.environ, "GOFLAGS": "-mod=vendor", "GOPROXY": "off", "GOTOOLCHAIN": "local",
           "GOCACHE": str(work / ".go-cache"), "GOPATH": str(work / ".go-path")}  # fmt: skip
    with open(log, "w") as out:
        for argv in (["tar", "xzf", str(tarball), "-C", str(work), "--strip-components=1"],
                     ["make", "runtimetest", "validation-executables"]):  # fmt: skip
            if subprocess.run(argv, cwd=work, env=env, stdout=out, stderr=out).returncode:
                raise ConformanceError(
                    f"building the suite: {' '.join(argv[:2])} failed (see {log})"
                )
    subprocess.run(["chmod", "-R", "u+w", work / ".go-path"], check=False)  # Go's read-only
    for cache in (".go-cache", ".go-path"):
        shutil.rmtree(work / cache, ignore_errors=True)
    if _missing(work):
        raise ConformanceError(f"building the suite left out {', '.join(_missing(work))}")
    work.rename(suite)


def programs(suite: Path, only: list[str]) -> list[Path]:
    missing = _missing(suite)
    found = sorted(suite.glob("validation/*/*.t"))
    if missing:
        raise ConformanceError(
            f"no built runtime-tools validation suite in {suite} (missing "
            f"{', '.join(missing)}): scripts/setup.sh --all builds it from "
            f"../shared/conformance/{SOURCE_NAME}, or give --suite a runtime-tools tree at "
            "commit 260e151 with runtimetest and its validation programs built"
        )
    if only:
        names = {p.stem: p for p in found}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ConformanceError(f"no such validation test: {', '.join(unknown)}")
        found = [names[n] for n in only]
    return found


def go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386"}.get(machine, machine)


def run_runtime(
    suite: Path, label: str, path: Path, tests: list[Path], timeout: float, progress: bool
) -> RuntimeResult:
    result = RuntimeResult(label, str(path), version(path), [])
    scratch = Path(tempfile.mkdtemp(prefix=f"pyvmm-conformance-{label}-"))
    # Searchable by everyone, as /tmp is: a user-namespace container's root is another
    # host uid, and it must reach the bundle (the bundle itself is the suite's business).
    scratch.chmod(0o755)
    try:
        command = wrapper(scratch, label, path)
        for program in tests:
            run = run_one(suite, program, command, scratch, timeout)
            result.tests.append(run)
            if progress:
                verdict = "ok" if run.passed else (run.aborted or f"{run.count('fail')} failed")
                print(f"{label:>16} {run.name:<40} {verdict}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def matrix(results: list[RuntimeResult]) -> dict[str, dict[str, str]]:
    """Assertion name -> runtime -> status ('absent' where the runtime never reached it)."""
    rows: dict[str, dict[str, str]] = {}
    for r in results:
        for run in r.tests:
            for key, a in zip(assertion_keys(run), run.assertions, strict=True):
                rows.setdefault(key, {})[r.label] = a.status
            if run.aborted:
                rows.setdefault(f"{run.name}: (whole program)", {})[r.label] = "fail"
    for row in rows.values():
        for r in results:
            row.setdefault(r.label, "absent")
    return rows


def first_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_text(results: list[RuntimeResult], suite: Path, rows: dict) -> str:
    labels = [r.label for r in results]
    w = max(12, *(len(x) for x in labels))
    out = [f"runtime-tools validation suite: {suite}", ""]
    out.append(f"{'':<22}" + "".join(f"{x:>{w + 2}}" for x in labels))
    totals = [r.totals() for r in results]
    for key in ("pass", "fail", "skip", "todo", "programs_passed", "programs", "left_behind"):
        out.append(f"{key:<22}" + "".join(f"{t[key]:>{w + 2}}" for t in totals))
    out += ["", "versions:"] + [f"  {r.label}: {r.version} ({r.path})" for r in results]
    out += ["", "per program (passed/failed/skipped assertions; ! = stopped early):", ""]
    out.append(f"{'':<40}" + "".join(f"{x:>{w + 2}}" for x in labels))
    names = list(dict.fromkeys(run.name for r in results for run in r.tests))
    for name in names:
        cells = []
        for r in results:
            run = next((t for t in r.tests if t.name == name), None)
            cell = (
                "-"
                if run is None
                else (
                    f"{run.count('pass')}/{run.count('fail')}/{run.count('skip')}"
                    + ("!" if run.aborted else "")
                )
            )
            cells.append(f"{cell:>{w + 2}}")
        out.append(f"{name:<40}" + "".join(cells))
    out += ["", "assertions where the runtimes differ or any fails:", ""]
    for key, row in rows.items():
        if "fail" in row.values() or len(set(row.values()) - {"absent"}) > 1:
            out.append("  " + " ".join(f"{row[x]:<6}" for x in labels) + f"  {key}")
    for r in results:
        out += ["", f"== failures of {r.label} =="]
        for run in r.tests:
            if run.aborted:
                why = first_line(run.diagnostic or run.stderr)
                out.append(f"- {run.name}: {run.aborted}: {why}")
            failed = [a for a in run.assertions if a.status == "fail"]
            for a in failed:
                out.append(f"- {run.name} #{a.number} {a.description}: {first_line(a.diagnostic)}")
            if any(not a.diagnostic for a in failed) and run.stderr.strip():
                said = dict.fromkeys(x for x in run.stderr.splitlines() if x.strip())
                out.append(f"  {run.name} stderr: {first_line(' | '.join(said), 600)}")
            for thing in run.left_behind:
                out.append(f"- {run.name}: left behind: {thing}")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        type=Path,
        help="built runtime-tools tree (commit 260e151); default: the one --build makes",
    )
    parser.add_argument(
        "--build",
        action="store_true",
        help=f"build the suite from ../shared/conformance/{SOURCE_NAME} into the cache",
    )
    parser.add_argument(
        "--runtime",
        action="append",
        default=[],
        help="[LABEL=]name or path of a runc-compatible runtime; repeat",
    )
    parser.add_argument(
        "--test",
        action="append",
        default=[],
        help="run only this validation program (e.g. default); repeat",
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per program")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("conformance-results"),
        help="directory for conformance.json and conformance.txt",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-program progress")
    args = parser.parse_args()
    try:
        if args.build:
            suite = build(lambda m: print(m, file=sys.stderr, flush=True))
            if suite is None:
                print(f"conformance: no ../shared/conformance/{SOURCE_NAME} beside the "
                      "repository: nothing to build, the conformance tests skip",
                      file=sys.stderr)  # fmt: skip
            else:
                print(suite)
            return 0
        if not args.runtime:
            raise ConformanceError("give at least one --runtime (or --build)")
        runtimes = [resolve(s) for s in args.runtime]
        labels = [label for label, _ in runtimes]
        if len(set(labels)) != len(labels):
            raise ConformanceError("two runtimes share a label: name them LABEL=PATH")
        suite = args.suite or default_suite()
        if suite is None:
            raise ConformanceError(
                f"no built runtime-tools validation suite: no ../shared/conformance/"
                f"{SOURCE_NAME} beside the repository to build it from; give --suite a "
                "runtime-tools tree at commit 260e151 with its validation programs built"
            )
        suite = suite.resolve()
        tests = programs(suite, args.test)
        if os.geteuid() != 0:
            raise ConformanceError("needs root (the suite creates containers)")
        if not shutil.which("unshare"):
            raise ConformanceError("needs unshare(1) from util-linux")
        lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConformanceError(f"another conformance run holds {LOCK}") from None
        become_subreaper()
        results = [
            run_runtime(suite, label, path, tests, args.timeout, not args.quiet)
            for label, path in runtimes
        ]
    except ConformanceError as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    rows = matrix(results)
    args.results.mkdir(parents=True, exist_ok=True)
    doc = {
        "suite": str(suite),
        "host": {
            "kernel": platform.release(),
            "hybrid_unified_unmounted": os.path.ismount(HYBRID_UNIFIED),
        },
        "runtimes": [
            {
                "label": r.label,
                "path": r.path,
                "version": r.version,
                "totals": r.totals(),
                "tests": [dataclasses.asdict(t) | {"aborted": t.aborted} for t in r.tests],
            }
            for r in results
        ],
        "matrix": rows,
    }
    (args.results / "conformance.json").write_text(json.dumps(doc, indent=1) + "\n")
    text = report_text(results, suite, rows)
    (args.results / "conformance.txt").write_text(text)
    print(text.split("\nversions:")[0])
    print(f"written: {args.results}/conformance.json, {args.results}/conformance.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
