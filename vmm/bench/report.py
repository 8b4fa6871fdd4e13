"""The comparison's results as people read them: a terminal table and a Markdown report.

Both are built from the JSON-ready result of compare.py and nothing else, so what a
reader sees is exactly what was measured and written to ``--json``.
"""

from __future__ import annotations

import shlex

MIB = 1 << 20
TIME_FIGURES = (
    "first_byte_ms", "init_ms", "result_ms", "done_ms", "inside_ms", "inside_result_ms",
)  # fmt: skip
MEMORY_FIGURES = ("rss_bytes", "guest_touched_bytes", "cgroup_peak_bytes")


def ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def mib(value: float) -> str:
    value /= MIB
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _spread(figure: dict | None, fmt) -> str:
    if not figure:
        return "-"
    return f"{fmt(figure['median'])} [{fmt(figure['min'])}-{fmt(figure['max'])}]"


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _ok(result: dict) -> list[dict]:
    return [r for r in result["rows"] if r["status"] == "ok"]


def time_rows(result: dict) -> list[list[str]]:
    rows = [["row", "first byte", "Linux /init", "result line", "done", "pyvmm: 1st byte",
             "pyvmm: result"]]  # fmt: skip
    for r in _ok(result):
        f = r["figures"]
        rows.append([r["label"], *(_spread(f.get(k), ms) for k in TIME_FIGURES)])
    return rows


def size_rows(result: dict) -> list[list[str]]:
    rows = [["row", "on disk", "without input", "process peak RSS", "guest touched", "cgroup peak"]]
    for r in _ok(result):
        f = r["figures"]
        cells = [_spread(f.get(k), mib) for k in MEMORY_FIGURES]
        disk = r["disk"]
        rows.append(
            [r["label"], mib(disk["total_bytes"]), mib(disk["without_input_bytes"]), *cells]
        )
    return rows


def scale_rows(result: dict) -> list[list[str]]:
    counts = result["settings"]["scale"]
    rows = [["row", *(f"{n} at once" for n in counts)]]
    for r in _ok(result):
        cells = []
        for s in r.get("scale", []):
            if s["status"] == "ok":
                done, mem = s["all_done_ms"]["median"], s["total_memory_bytes"]["median"]
                cells.append(f"{ms(done)} ms, {mib(mem)} MiB")
            else:
                cells.append("error")
        rows.append([r["label"], *cells])
    return rows


def failures(result: dict) -> list[str]:
    lines = []
    for r in result["rows"]:
        if r["status"] != "ok":
            printed = f" (printed {r['printed']!r})" if r.get("printed") else ""
            lines.append(f"{r['label']}: {r['status']}: {r['reason']}{printed}")
        for s in r.get("scale", []):
            if s["status"] != "ok":
                lines.append(f"{r['label']}, {s['instances']} at once: error: {s['reason']}")
    return lines


def _machine_line(result: dict) -> str:
    m = result["machine"]
    kvm = m["kvm"]
    nested = "nested" if kvm["nested"] else "not nested"
    release = m["kernel"].split()[1]
    load = f"{m['load_average'][0]:.2f} before, {result['load_average_after'][0]:.2f} after"
    return (
        f"{m['cpu_model']} x{m['cpus']}, {mib(m['memory_bytes'])} MiB, Linux {release},"
        f" KVM: {kvm['kind']} ({nested}), pyvmm {m['pyvmm']}; load average {load}"
    )


def table(result: dict) -> str:
    s = result["settings"]
    out = [
        _machine_line(result),
        f"input {s['input_bytes']} bytes; expected: {result['input']['expected_line']}",
        "",
        f"time, ms: median [min-max] of {s['runs']} runs {_after_warmup(s)}",
        *_grid(time_rows(result)),
        "",
        "size and memory, MiB",
        *_grid(size_rows(result)),
    ]
    if s["scale"] and _ok(result):
        out += ["", "scale: all finished (median ms), memory of all (median MiB)"]
        out += _grid(scale_rows(result))
    notes = [f"{r['label']}: {n}" for r in _ok(result) for n in r["notes"]]
    if any(r["kind"] == "reference" for r in result["rows"]):
        notes.insert(0, "[ref]: reference rows, other tools on the same files and input")
    fails = failures(result)
    if notes:
        out += ["", *notes]
    if fails:
        out += ["", "rows without figures:", *fails]
    return "\n".join(out)


def _md_table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def _figure(result: dict, key: str, figure: str) -> float | None:
    for r in _ok(result):
        if r["key"] == key and figure in r["figures"]:
            return r["figures"][figure]["median"]
    return None


def _each(rows: list[dict], value) -> str:
    return "; ".join(f"{r['label']}: {value(r)}" for r in rows) or "no row ran"


def _memory(r: dict) -> float:
    f = r["figures"]
    return f["rss_bytes"]["median"] + f.get("cgroup_peak_bytes", {"median": 0})["median"]


def _claims(result: dict) -> list[str]:
    """Each claim of the seed's table beside the figures measured in this run."""
    ok = _ok(result)
    host = _figure(result, "host", "done_ms")
    packages = [
        r["facts"]["kernel_package_bytes"] for r in ok if "kernel_package_bytes" in r["facts"]
    ]
    disk = _each(
        ok,
        lambda r: (
            f"{mib(r['disk']['total_bytes'])} MiB, "
            f"{mib(r['disk']['without_input_bytes'])} MiB without the input data"
        ),
    )
    if packages:
        disk += (
            f"; the Linux VM's whole kernel package unpacked, modules too: {mib(packages[0])} MiB"
        )
    start = _each(ok, lambda r: f"{ms(r['figures']['result_ms']['median'])} ms")
    speed = "no host figure"
    if host:
        speed = _each(ok, lambda r: f"x{r['figures']['done_ms']['median'] / host:.1f}")
    memory = _each(ok, lambda r: f"{mib(_memory(r))} MiB on {r['kernel']}")
    claims = [
        (
            "containers start in seconds or less; VMs take minutes to boot",
            f"start to result line, whole process: {start}",
        ),
        ("VMs are GBs, containers MBs", f"on disk, everything each row needs: {disk}"),
        (
            "containers run at native speed; VMs pay an overhead",
            f"whole process, against the host process: {speed}",
        ),
        (
            "VMs isolate with a kernel of their own; containers share the host's",
            f"memory per instance (peak RSS, plus the cgroup peak for containers), and the "
            f"kernel it ran on: {memory}",
        ),
    ]
    return ["| the seed says | measured here (medians) |", "|---|---|"] + [
        f"| {claim} | {measured} |" for claim, measured in claims
    ]


def markdown(result: dict) -> str:
    s = result["settings"]
    out = [
        "# pyvmm bench: one workload as VM, container and host process",
        "",
        f"Run {result['started_utc']} to {result['finished_utc']} on: {_machine_line(result)}.",
        "",
        f"Workload input: {s['input_bytes']} bytes; every row had to print "
        f"`{result['input']['expected_line']}`. Times are medians [min-max] of {s['runs']} "
        f"runs {_after_warmup(s)}; each run is one process started as a user "
        "would start it.",
        "",
        "## The seed's claims beside the figures",
        "",
        *_claims(result),
        "",
        "## Time (ms)",
        "",
        *_md_table(time_rows(result)),
        "",
        "## Size and memory (MiB)",
        "",
        *_md_table(size_rows(result)),
    ]
    if s["scale"] and _ok(result):
        out += ["", "## Scale: N instances at once", "", *_md_table(scale_rows(result))]
    out += ["", "## Rows", ""]
    for r in result["rows"]:
        out.append(f"- **{r['label']}** ({r['kind']}, {r['status']}): {r['measures']}.")
        if r["status"] != "ok":
            out.append(f"  Reason: {r['reason']}")
        out += [f"  Note: {n}" for n in r["notes"]]
        if r.get("run_command"):
            out.append(f"  Command: `{shlex.join(r['run_command'])}`")
        out += [f"  Prepared with: `{shlex.join(c)}`" for c in r["commands"]]
    fails = failures(result)
    if fails:
        out += ["", "## Rows without figures", "", *(f"- {f}" for f in fails)]
    out += ["", f"Input made with: `{shlex.join(result['input']['command'])}`", ""]
    return "\n".join(out)


def _after_warmup(settings: dict) -> str:
    n = settings["warmup_runs"]
    return f"after {n} warm-up" if n else "with no warm-up (--fast)"
