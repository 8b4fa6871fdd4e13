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


def _bars(ax, labels: list[str], figures: list[dict], scale: float, title: str) -> None:
    """Median bars with min-max whiskers."""
    med = [f["median"] / scale for f in figures]
    low = [m - f["min"] / scale for m, f in zip(med, figures, strict=True)]
    high = [f["max"] / scale - m for m, f in zip(med, figures, strict=True)]
    ax.barh(labels, med, xerr=[low, high], capsize=3, color="tab:blue")
    ax.set_title(title)
    ax.invert_yaxis()


def plot(result: dict, path: str) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    ok = [r for r in result["rows"] if r["status"] == "ok"]
    if not ok:
        raise PyvmmError("--plot: no row produced figures")
    labels = [r["label"] for r in ok]
    fig, ((start, memory), (disk, scale)) = plt.subplots(2, 2, figsize=(14, 9))
    _bars(start, labels, [r["figures"]["done_ms"] for r in ok], 1, "start to result, ms (log)")
    start.set_xscale("log")
    rss = [r["figures"]["rss_bytes"]["median"] / MIB for r in ok]
    cgroup = [r["figures"].get("cgroup_peak_bytes", {"median": 0})["median"] / MIB for r in ok]
    memory.barh(labels, rss, label="process peak RSS", color="tab:blue")
    memory.barh(labels, cgroup, left=rss, label="container cgroup peak", color="tab:orange")
    memory.set_title("memory, MiB (medians)")
    memory.invert_yaxis()
    memory.legend()
    disk.barh(labels, [r["disk"]["total_bytes"] / MIB for r in ok], color="tab:green")
    disk.set_title("on disk, MiB")
    disk.invert_yaxis()
    counts = result["settings"]["scale"]
    for r in ok:
        points = [
            (s["instances"], s["all_done_ms"]["median"])
            for s in r.get("scale", [])
            if s["status"] == "ok"
        ]
        if points:
            scale.plot(*zip(*points, strict=True), marker="o", label=r["label"])
    scale.set_title("N at once: until all finished, ms" if counts else "(no --scale given)")
    scale.set_xlabel("instances")
    if counts:
        scale.set_yscale("log")
        scale.legend()
    m = result["machine"]
    fig.suptitle(
        f"pyvmm bench: {m['cpu_model']}, KVM {m['kvm']['kind']}, "
        f"{result['settings']['input_bytes']} bytes input"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
