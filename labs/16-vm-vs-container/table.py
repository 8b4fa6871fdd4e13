"""Lab 16: the VM-versus-container table, every row from measurements.

Usage: pyvmm bench --fast --json bench.json && python table.py bench.json

The usual table (a VM starts in minutes, a container in seconds; a VM image is GBs, a
container's MBs; a VM holds all its RAM, a container what it uses; a VM has its own
kernel, containers share the host's) is about general-purpose guests. Put pyvmm's tiny
VM (row "tiny-vm") beside a pyvmm container (row "container-volume") and say, row by
row, whether the claim holds *here*. Prints the table in Markdown, then one JSON line:
{"startup": {"vm": ..., "container": ..., "holds": ...}, "size": ..., "memory": ...,
"isolation": ...}.
"""

import json
import sys

# When a claim "holds": the VM side must be at least this many times the container's.
STARTUP_RATIO = 10  # "minutes against seconds" is 60x; allow a generous 10x
SIZE_RATIO = 100  # "GBs against MBs" is 1000x; allow 100x
MEMORY_RATIO = 2  # "all its RAM against what it uses": at least twice

CLAIMS = {
    "startup": "a VM takes far longer to start (result line, ms)",
    "size": "a VM is far bigger on disk (bytes)",
    "memory": "a VM holds far more memory (bytes)",
    "isolation": "a VM runs its own kernel, a container the host's",
}


def rows(bench: dict) -> tuple[dict, dict]:
    by_key = {row["key"]: row for row in bench["rows"]}
    return by_key["tiny-vm"], by_key["container-volume"]


def measure(bench: dict) -> dict:
    """Each claim's two figures, from the bench's JSON, and whether the claim holds."""
    vm, ct = rows(bench)

    # >>> 16: startup: the median result_ms of each row ("figures"); size: the
    # ... disk "total_bytes"; memory: the median rss_bytes, plus for the container its
    # ... cgroup_peak_bytes (its processes are apart from pyvmm's monitor); isolation:
    # ... each row's "kernel". Then "holds" by the ratios above (isolation: the kernels
    # ... differ)
    def median(row: dict, name: str) -> float:
        return row["figures"][name]["median"]

    figures = {
        "startup": (median(vm, "result_ms"), median(ct, "result_ms"), STARTUP_RATIO),
        "size": (vm["disk"]["total_bytes"], ct["disk"]["total_bytes"], SIZE_RATIO),
        "memory": (
            median(vm, "rss_bytes"),
            median(ct, "rss_bytes") + median(ct, "cgroup_peak_bytes"),
            MEMORY_RATIO,
        ),
    }
    result = {
        claim: {"vm": v, "container": c, "holds": v >= ratio * c}
        for claim, (v, c, ratio) in figures.items()
    }
    result["isolation"] = {
        "vm": vm["kernel"],
        "container": ct["kernel"],
        "holds": vm["kernel"] != ct["kernel"],
    }
    return result
    # <<<


def main(path: str) -> None:
    with open(path) as f:
        result = measure(json.load(f))
    print("| claim | tiny VM | container | holds here? |")
    print("|---|---|---|---|")
    for claim, text in CLAIMS.items():
        r = result[claim]
        vm, ct = (f"{x:.1f}" if isinstance(x, float) else x for x in (r["vm"], r["container"]))
        print(f"| {text} | {vm} | {ct} | {'yes' if r['holds'] else 'no'} |")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
