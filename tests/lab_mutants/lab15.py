"""Lab 15's wrong solutions: a report that is right for this host without looking."""

from labmutant import Mutant

MUTANTS = [
    Mutant(
        "the shared verdicts written down, not compared",
        "shares.py",
        expect="compare each fact's two values",
        edits=(
            (
                "    return {fact: host[fact] == container[fact] for fact in FACTS}\n",
                '    return {"release": True, "boot_id": True, "hostname": False, '
                '"keys": False, "modules": True}\n',
            ),
        ),
    ),
    Mutant(
        "the container's facts read on the host",  # no container ever runs
        "shares.py",
        expect="hostname",
        edits=(
            (
                '    cmd = [*PYVMM, "container", "run", "--rm", "busybox", "sh", "-c", PROBE]\n',
                '    cmd = ["sh", "-c", PROBE]\n',
            ),
        ),
    ),
    Mutant(
        "the container's facts are the host's, edited to look right",  # deliberate faking
        "shares.py",
        expect="read from inside the container",
        edits=(
            (
                '    cmd = [*PYVMM, "container", "run", "--rm", "busybox", "sh", "-c", PROBE]\n'
                "    out = subprocess.run(cmd, capture_output=True, text=True, check=True)\n"
                "    return dict(zip(FACTS, out.stdout.split(), strict=True))\n",
                '    return {**host_facts(), "hostname": "c0ffee", "keys": "0"}\n',
            ),
        ),
    ),
    Mutant(
        "the VM's whole first line as its kernel",
        "shares.py",
        expect="vm_kernel",
        edits=(
            (
                'return out.stdout.splitlines()[0].split(":")[0]',
                "return out.stdout.splitlines()[0]",
            ),
        ),
    ),
    Mutant(
        "the VM's kernel written down, not read",
        "shares.py",
        expect="read the VM's first line",
        edits=(
            (
                '    return out.stdout.splitlines()[0].split(":")[0]\n',
                '    return "pyvmm tiny kernel"\n',
            ),
        ),
    ),
]
