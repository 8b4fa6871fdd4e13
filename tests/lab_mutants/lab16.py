"""Lab 16's wrong solutions: verdicts that do not come from the figures."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "verdicts written down for this machine",  # right here, whatever the figures
        "table.py",
        expect="verdict",
        edits=(
            ('"holds": v >= ratio * c}', '"holds": False}'),
            ('"holds": vm["kernel"] != ct["kernel"],', '"holds": True,'),
        ),
    ),
    Mutant(
        "a strict comparison: a VM exactly the ratio bigger does not count",
        "table.py",
        expect="verdict",
        edits=(('"holds": v >= ratio * c}', '"holds": v > ratio * c}'),),
    ),
    Mutant(
        "the container's memory without its cgroup's peak",
        "table.py",
        expect="memory",
        edits=(
            (
                'median(ct, "rss_bytes") + median(ct, "cgroup_peak_bytes"),',
                'median(ct, "rss_bytes"),',
            ),
        ),
    ),
]
