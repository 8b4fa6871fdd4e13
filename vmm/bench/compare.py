"""``pyvmm bench``: the same workload every way, timed, checked and summarised alike.

For each row: get ready (or record why it cannot), one warm-up run (none for a quick
check, ``--fast``), then ``runs`` measured runs, each one process started as a user
would start it; every run must print the expected result line or the row is an error,
not a number. The figures of a row are medians with min and max over its runs. With
``scale``, N instances are then started at once, N for each value given, and the time
until all have finished and the memory they took together are summarised the same way.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from collections.abc import Callable

from vmm.bench import workload
from vmm.bench.machineinfo import describe
from vmm.bench.measure import ProcessResult, run_checked, run_processes, summary
from vmm.bench.rows import INPUT, Row, Workspace, instance_prefix
from vmm.errors import PyvmmError

WARMUP = 1

Progress = Callable[[str], None]


class RowFailure(PyvmmError):
    """A run of a row did not do the work: its reason, and what it printed instead."""

    def __init__(self, reason: str, output: str | None = None):
        super().__init__(reason)
        self.output = output


def check(proc: ProcessResult, expected: bytes, timeout: float) -> int:
    """The offset of the expected result line in the output; RowFailure otherwise."""
    line, offset = workload.result_line(proc.stdout)
    printed = line.decode(errors="replace") if line is not None else None
    if proc.status is None:
        raise RowFailure(f"did not finish within {timeout:.0f} s (killed)", printed)
    if line is None:
        said = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        tail = f": {said[-1][:200]}" if said else ""
        raise RowFailure(f"exit status {proc.status} and no result line{tail}", printed)
    if line != expected:
        raise RowFailure(f"printed a different result line (exit status {proc.status})", printed)
    if proc.status != 0:
        raise RowFailure(f"printed the right line but exited with status {proc.status}", printed)
    return offset


class Bench:
    """One comparison: the workspace, the rows, and the results as they come."""

    def __init__(
        self,
        rows: list[Row],
        runs: int,
        size: int,
        scale: list[int],
        root: str,
        progress: Progress = lambda _text: None,
        warmup: int = WARMUP,
    ):
        if runs < 1:
            raise PyvmmError("--runs must be at least 1")
        if any(n < 1 for n in scale):
            raise PyvmmError("--scale values must be at least 1")
        self.rows, self.runs, self.size, self.scale = rows, runs, size, scale
        self.root, self.warmup = root, warmup
        self.progress = progress
        self._instances = 0

    def run(self) -> dict:
        started, machine = _now(), describe()
        scratch = tempfile.mkdtemp(prefix="pyvmm-bench-")
        try:
            os.mkdir(os.path.join(scratch, "data"))
            image = os.path.join(scratch, "data", "input.img")
            self.progress(f"making a {self.size}-byte input image")
            make = workload.make_command(image, self.size)
            run_checked(make, [])
            ws = Workspace(image, workload.expected_line(image), scratch, self.root)
            results = [self._row(ws, i, row) for i, row in enumerate(self.rows)]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {
            "tool": "pyvmm bench",
            "started_utc": started,
            "finished_utc": _now(),
            "load_average_after": os.getloadavg(),
            "machine": machine,
            "settings": {
                "runs": self.runs,
                "warmup_runs": self.warmup,
                "input_bytes": self.size,
                "scale": self.scale,
                "container_root": self.root,
            },
            "input": {"bytes": self.size, "expected_line": ws.expected.decode(), "command": make},
            "rows": results,
        }

    def _instance(self) -> str:
        self._instances += 1
        return f"{instance_prefix()}{self._instances}"

    def _once(self, ws: Workspace, row: Row, n: int, detailed: bool) -> list[dict]:
        """Start ``n`` instances of the row at once; their figures, all checked."""
        names = [self._instance() for _ in range(n)]
        argvs = [row.command(ws, name) for name in names]
        procs = run_processes(argvs, row.timeout)
        figures, failure = [], None
        for name, proc in zip(names, procs, strict=True):
            try:
                offset = check(proc, ws.expected, row.timeout)
            except RowFailure as e:
                failure = failure or e
            try:  # always: a container row removes its container here
                extra = row.collect(ws, name, proc, detailed)
            except PyvmmError as e:
                failure = failure or RowFailure(str(e))
            if failure:
                continue
            figures.append(
                {
                    "first_byte_ms": proc.first_byte * 1e3,
                    "result_ms": proc.time_of(offset) * 1e3,
                    "done_ms": proc.done * 1e3,
                    "rss_bytes": proc.maxrss,
                    **extra,
                }
            )
        if failure:
            raise failure
        row.last_command = argvs[0]
        return figures

    def _row(self, ws: Workspace, index: int, row: Row) -> dict:
        where = f"[{index + 1}/{len(self.rows)}] {row.label}"
        entry = {
            "key": row.key,
            "label": row.label,
            "kind": row.kind,
            "measures": row.measures,
            "status": "ok",
            "commands": row.commands,
            "notes": row.notes,
        }
        try:
            self.progress(f"{where}: getting ready")
            row.prepare(ws)
        except (PyvmmError, OSError) as e:
            _cleanup(row, ws)
            return {**entry, "status": "could not run", "reason": str(e)}
        try:
            samples = []
            for i in range(self.warmup + self.runs):
                run = "warm-up" if i < self.warmup else f"run {i - self.warmup + 1}/{self.runs}"
                self.progress(f"{where}: {run}")
                samples += self._once(ws, row, 1, detailed=True)
            entry["label"] = row.label  # a row may name itself better once prepared
            entry["kernel"] = row.kernel or f"the host's, Linux {os.uname().release}"
            entry["run_command"] = row.last_command
            entry["result_line"] = ws.expected.decode()
            entry["figures"] = _summarise(samples[self.warmup :])
            parts = row.disk(ws)
            total = sum(parts.values())
            entry["disk"] = {
                "parts": parts,
                "total_bytes": total,
                "without_input_bytes": total - parts[INPUT],
            }
            entry["scale"] = [self._scale(ws, row, n, where) for n in self.scale]
        except RowFailure as e:
            entry.update(status="error", reason=str(e), printed=e.output)
        except (PyvmmError, OSError) as e:
            entry.update(status="error", reason=str(e))
        finally:
            _cleanup(row, ws)
            entry["commands"] = row.commands
            entry["facts"] = row.facts
        return entry

    def _scale(self, ws: Workspace, row: Row, n: int, where: str) -> dict:
        """``n`` at once, ``runs`` times: until the last has finished, and the memory of
        all (each instance's peak resident set plus its container's cgroup peak)."""
        done, memory = [], []
        try:
            for i in range(self.runs):
                self.progress(f"{where}: {n} at once, run {i + 1}/{self.runs}")
                figures = self._once(ws, row, n, detailed=False)
                done.append(max(f["done_ms"] for f in figures))
                memory.append(sum(f["rss_bytes"] + f.get("cgroup_peak_bytes", 0) for f in figures))
        except RowFailure as e:
            return {"instances": n, "status": "error", "reason": str(e), "printed": e.output}
        return {
            "instances": n,
            "status": "ok",
            "all_done_ms": summary(done),
            "total_memory_bytes": summary(memory),
        }


def _cleanup(row: Row, ws: Workspace) -> None:
    """Undo a row's preparation; a failure to is a note on the row, not the bench's end."""
    try:
        row.cleanup(ws)
    except (PyvmmError, OSError) as e:
        row.notes.append(f"cleaning up failed: {e}")


def _summarise(samples: list[dict]) -> dict:
    keys = [k for k in samples[0] if all(k in s for s in samples)]
    return {k: summary([s[k] for s in samples]) for k in keys}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
