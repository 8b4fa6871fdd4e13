"""Lab 12's wrong solutions: limits that are printed, not set."""

from labmutant import Mutant

_CPU = """        if cpus is not None:
            quota = int(cpus * CPU_PERIOD_US)
"""
_REPORT = """        throttled = _field(self.read("cpu", "cpu.stat"), "nr_throttled")
        if throttled:
            print(f"mini_run: throttled {throttled} times", file=sys.stderr)
"""

MUTANTS = [
    Mutant(
        "no CPU quota, a made-up throttling count",
        "mini_run.py",
        expect="no quota",
        edits=(
            (_CPU, "        if False:\n            quota = 0\n"),
            (_REPORT, '        print("mini_run: throttled 16 times", file=sys.stderr)\n'),
        ),
    ),
    Mutant(
        "the periods counted, not the throttled ones",  # cpu.stat's neighbouring line
        "mini_run.py",
        expect="nr_throttled",
        edits=(
            (
                '_field(self.read("cpu", "cpu.stat"), "nr_throttled")',
                '_field(self.read("cpu", "cpu.stat"), "nr_periods")',
            ),
        ),
    ),
    Mutant(
        "the quota in the wrong unit (a 10 ms period)",
        "mini_run.py",
        expect="quota of 0.01 CPUs",
        edits=(("quota = int(cpus * CPU_PERIOD_US)", "quota = int(cpus * 10_000)"),),
    ),
    Mutant(
        "no memory limit",
        "mini_run.py",
        expect="OOM",
        edits=(("        if memory_mib is not None:\n", "        if False:\n"),),
    ),
    Mutant(
        "no cgroup namespace",
        "mini_run.py",
        expect="cgroup namespace",
        edits=(
            (
                '        check(lib.unshare(lib.CLONE_NEWCGROUP), "unshare cgroup")\n',
                "        pass\n",
            ),
        ),
    ),
]
