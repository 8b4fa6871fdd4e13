"""``--plot``: the comparison as charts, from the same result the table and JSON show.

matplotlib is an optional extra (``pip install 'pyvmm[plot]'``), imported only here and
only when a plot is asked for; its absence is a one-line error before anything runs.
"""

from __future__ import annotations

from vmm.errors import PyvmmError

MIB = 1 << 20


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PyvmmError("--plot needs matplotlib: pip install 'pyvmm[plot]'") from None


def _bars(ax, labels: list[str], figures: list[dict], title: str) -> None:
    """Median bars with min-max whiskers."""
    med = [f["median"] for f in figures]
    low = [m - f["min"] for m, f in zip(med, figures, strict=True)]
    high = [f["max"] - m for m, f in zip(med, figures, strict=True)]
    ax.barh(labels, med, xerr=[low, high], capsize=3, color="tab:blue")
    ax.set_title(f"{title} (median, min-max)")
    ax.invert_yaxis()


def _stacked(ax, labels: list[str], title: str, parts: dict[str, list[float]]) -> None:
    """Bars made of parts, in bytes, shown in MiB."""
    left = [0.0] * len(labels)
    for name, values in parts.items():
        mib = [v / MIB for v in values]
        ax.barh(labels, mib, left=left, label=name)
        left = [a + b for a, b in zip(left, mib, strict=True)]
    ax.set_title(title)
    ax.invert_yaxis()
    ax.legend(fontsize="small")


def _median(row: dict, figure: str) -> float:
    return row["figures"][figure]["median"] if figure in row["figures"] else 0.0


def plot(result: dict, path: str) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    ok = [r for r in result["rows"] if r["status"] == "ok"]
    if not ok:
        raise PyvmmError("--plot: no row produced figures")
    labels = [r["label"] for r in ok]
    fig, ((start, memory, disk), (scale_time, scale_memory, spare)) = plt.subplots(
        2, 3, figsize=(18, 9)
    )
    fig.delaxes(spare)
    _bars(start, labels, [r["figures"]["result_ms"] for r in ok], "start to result line, ms")
    start.set_xscale("log")
    start.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap
    _stacked(
        memory,
        labels,
        "memory, MiB (medians)",
        {
            "process peak RSS": [r["figures"]["rss_bytes"]["median"] for r in ok],
            "container cgroup peak": [_median(r, "cgroup_peak_bytes") for r in ok],
        },
    )
    _stacked(
        disk,
        labels,
        "on disk, MiB",
        {
            "what the row needs": [r["disk"]["without_input_bytes"] for r in ok],
            "input data": [r["disk"]["total_bytes"] - r["disk"]["without_input_bytes"] for r in ok],
        },
    )
    counts = result["settings"]["scale"]
    for ax, key, title in (
        (scale_time, "all_done_ms", "N at once: until all finished, ms"),
        (scale_memory, "total_memory_bytes", "N at once: memory of all, MiB"),
    ):
        for r in ok:
            points = [
                (s["instances"], s[key]["median"] / (MIB if "bytes" in key else 1))
                for s in r.get("scale", [])
                if s["status"] == "ok"
            ]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=r["label"])
        ax.set_title(title if counts else "(no --scale given)")
        ax.set_xlabel("instances at once")
        if counts:
            ax.set_xticks(counts)
            ax.set_yscale("log")
            ax.legend(fontsize="small")
    m = result["machine"]
    fig.suptitle(
        f"pyvmm bench: {m['cpu_model']}, KVM {m['kvm']['kind']}, "
        f"{result['settings']['input_bytes']} bytes input"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
