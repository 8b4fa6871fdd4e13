"""Small helpers every benchmark shares: repeated runs, medians, building C anchors."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from vmm.errors import PyvmmError

CACHE_DIR = os.environ.get("PYVMM_CACHE", os.path.expanduser("~/.cache/pyvmm"))


def pyvmm_command() -> list[str]:
    """The installed command (scripts/pyvmm) when there is one: what a user runs."""
    script = os.path.join(os.path.dirname(sys.executable), "pyvmm")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "vmm"]


def interrupt(proc: subprocess.Popen) -> None:
    """End a guest a benchmark started: Ctrl-C, so that it removes what it made (pyvmm
    its control socket), then kill; its pipes closed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def read_until(proc: subprocess.Popen, mark: bytes, timeout: float, what: str) -> float:
    """Seconds until ``mark`` appears on the process's output; an error after
    ``timeout`` seconds, also while the process prints nothing (a stalled guest)."""
    started = time.perf_counter()
    seen = b""
    while mark not in seen:
        left = timeout - (time.perf_counter() - started)
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise PyvmmError(f"{what}: no {mark.decode()!r} within {timeout:g} s")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise PyvmmError(f"{what} ended before {mark.decode()!r}")
        seen = seen[-200:] + chunk
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict:
    """Median with min and max: on a noisy machine the median is the figure to quote."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
    }


def repeat(fn: Callable[[], float], runs: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    return summary([fn() for _ in range(runs)])


def interleaved(fns: dict[str, Callable[[], float]], runs: int, warmup: int = 1) -> dict:
    """Like ``repeat`` for several contenders, taking turns run by run, so that a change
    in the machine's load falls on all of them alike; the ratios are then fair."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            samples[name].append(fn())
    return {name: summary(values) for name, values in samples.items()}


def wall_time(argv: list[str], **kw) -> float:
    """Whole-process wall time of a command, as a user waits for it; it must succeed."""
    t = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-200:]}")
    return elapsed


def build_c(source: str, name: str) -> str:
    """Compile a benchmark's C anchor once into the cache directory."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    out = os.path.join(CACHE_DIR, name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(source):
        subprocess.run(["gcc", "-O2", "-o", out, source], check=True)
    return out


class ProcessResult(NamedTuple):
    """One finished process as a user saw it, timed from just before it was started.

    ``chunks`` holds (seconds, bytes of stdout so far) at each arrival, so the time a
    given line appeared can be found after the fact. ``maxrss`` is the largest
    resident set of the process or of any descendant it waited for.
    """

    argv: list[str]
    status: int | None  # None: killed at the timeout
    done: float
    maxrss: int | None  # None: the launcher was killed before it could tell
    stdout: bytes
    stderr: bytes
    chunks: list[tuple[float, int]]

    @property
    def first_byte(self) -> float | None:
        return self.chunks[0][0] if self.chunks else None

    def time_of(self, offset: int) -> float | None:
        """When the byte at ``offset`` of stdout had arrived."""
        return next((t for t, total in self.chunks if total > offset), None)


MAXRSS_SOURCE = os.path.join(os.path.dirname(__file__), "maxrss.c")


def run_processes(
    argvs: list[list[str]], timeout: float, grace: float = 1.0, **popen
) -> list[ProcessResult]:
    """Start every command at once and wait for all, timing each one's output and exit.

    Each command runs under the ``maxrss`` launcher (see maxrss.c), which reports its
    peak resident set. Exits are seen through pidfds, so a completion time is when the
    process exited, not when its pipes happened to close; a descendant still holding a
    pipe is given ``grace`` seconds. A command still running at ``timeout`` is killed
    with its process group and reported with status None.
    """
    launcher = build_c(MAXRSS_SOURCE, "maxrss")
    reports = [os.pipe() for _ in argvs]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [launcher, str(w), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(w,),
            **popen,
        )
        for argv, (_, w) in zip(argvs, reports, strict=True)
    ]
    for _, w in reports:
        os.close(w)
    sel = selectors.DefaultSelector()
    out = [(bytearray(), bytearray()) for _ in procs]
    chunks: list[list[tuple[float, int]]] = [[] for _ in procs]
    ended: dict[int, tuple[int | None, float]] = {}
    for i, p in enumerate(procs):
        sel.register(p.stdout, selectors.EVENT_READ, (i, 0))
        sel.register(p.stderr, selectors.EVENT_READ, (i, 1))
        sel.register(os.pidfd_open(p.pid), selectors.EVENT_READ, (i, None))
    deadline = t0 + timeout
    last_exit = None
    killed = False
    try:
        while sel.get_map():
            now = time.perf_counter()
            if len(ended) == len(procs):
                last_exit = last_exit or now
                if now > last_exit + grace:
                    break
            elif now > deadline and not killed:
                killed = True
                for p in procs:
                    if p.returncode is None:
                        _kill_group(p.pid)
            for key, _ in sel.select(timeout=0.1):
                i, stream = key.data
                if stream is None:
                    sel.unregister(key.fileobj)
                    os.close(key.fd)
                    status = procs[i].wait()
                    ended[i] = (None if killed else status, time.perf_counter() - t0)
                    continue
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                out[i][stream].extend(data)
                if stream == 0:
                    chunks[i].append((time.perf_counter() - t0, len(out[i][0])))
    finally:
        for key in list(sel.get_map().values()):
            if key.data[1] is None:
                os.close(key.fd)
        sel.close()
        for p in procs:
            if p.returncode is None:  # only after an exception: do not leave it running
                _kill_group(p.pid)
                p.wait()
            p.stdout.close()
            p.stderr.close()
    results = []
    for i, (r, _) in enumerate(reports):
        with os.fdopen(r, "rb") as f:
            report = f.read().strip()
        maxrss = int(report) * 1024 if report else None
        results.append(
            ProcessResult(
                argvs[i], *ended[i], maxrss, bytes(out[i][0]), bytes(out[i][1]), chunks[i]
            )
        )
    return results


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def disk_usage(*paths: str) -> int:
    """Bytes allocated on disk under the paths, each file counted once (hard links and
    paths given twice too), so a sparse image counts only what it really holds."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def count(path: str) -> None:
        nonlocal total
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512

    for top in paths:
        count(top)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                count(os.path.join(root, name))
    return total


def run_checked(argv: list[str], log: list[list[str]], cwd: str | None = None) -> str:
    """Run a preparation step, note it in ``log``, and turn failure into one line."""
    log.append(argv)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600)
    except FileNotFoundError:
        raise PyvmmError(f"{argv[0]} is not installed") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise PyvmmError(f"{' '.join(argv[:3])} failed: {last[0]}")
    return proc.stdout


def apt_get(args: list[str], log: list[list[str]], cwd: str | None = None) -> str:
    """``apt-get ARGS`` (install, download), and once more after ``apt-get update`` if
    it failed: on a fresh machine the package lists may be missing or stale."""
    env = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    try:
        return run_checked([*env, *args], log, cwd)
    except PyvmmError:
        run_checked([*env, "update", "-qq"], log)
        return run_checked([*env, *args], log, cwd)
