"""Lab 15's checks: the student's report of what a container shares with its host (and
a VM does not) is what the check sees itself."""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from vmm.course.labs import Check, CheckFailed, once, run_student, tail

TITLE = "What a container shares with its host, and a VM does not"
CONCEPT = "one kernel for all containers: uname -r, sysctls, keyrings, modules"
NEEDS = ("root", "kvm", "images")
FILES = ("shares.py",)
FACTS = ("release", "boot_id", "hostname", "keys", "modules")


def _report(workdir: Path) -> dict:
    """shares.py's report, run once for the checks that read it (it runs a container and
    boots a VM: seconds)."""
    return once(workdir, FILES, lambda: _run_report(workdir))


def _run_report(workdir: Path) -> dict:
    proc = run_student(["shares.py"], workdir, timeout=60)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise CheckFailed(f"shares.py did not print its JSON report:\n{tail(proc)}") from None


def _with_stand_in(workdir: Path, call: str, script: str) -> subprocess.CompletedProcess:
    """shares.CALL() printed as JSON, with PYVMM a stand-in: ``sh -c SCRIPT`` given
    pyvmm's arguments. The check chooses what the stand-in prints, so the answer must be
    read from the command's output, not known in advance or read elsewhere."""
    program = (
        "import json, shares, sys; shares.PYVMM = ['sh', '-c', sys.argv[1], 'pyvmm']; "
        f"print(json.dumps(shares.{call}()))"
    )
    return run_student([sys.executable, "-c", program, script], workdir, timeout=30)


def _answer(proc: subprocess.CompletedProcess) -> object:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def _host() -> dict:
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    try:
        with open("/proc/keys") as f:
            keys = str(len(f.readlines()))
    except OSError:
        keys = "0"
    return {
        "release": os.uname().release,
        "boot_id": boot_id,
        "hostname": socket.gethostname(),
        "keys": keys,
        "modules": str(len(os.listdir("/sys/module"))),
    }


def host_facts_are_right(workdir: Path) -> str:
    got = dict(_report(workdir).get("host") or {})
    want = _host()
    # The host's keyrings come and go with other processes' sessions: any count will do.
    keys, _ = got.pop("keys", ""), want.pop("keys")
    if got != want or not keys.isdigit():
        raise CheckFailed(f"host facts {got} (keys {keys!r}), the check reads {want}")
    return f"kernel {want['release']}, boot {want['boot_id'][:8]}..."


def container_shares_the_kernel(workdir: Path) -> str:
    report = _report(workdir)
    c, shared = report.get("container") or {}, report.get("shared") or {}
    host = _host()
    for fact in ("release", "boot_id", "modules"):
        if c.get(fact) != host[fact] or shared.get(fact) is not True:
            raise CheckFailed(
                f"the container's {fact} should be the host's ({host[fact]}), "
                f"reported {c.get(fact)!r}, shared {shared.get(fact)!r}"
            )
    if shared.get("hostname") is not False or c.get("hostname") == host["hostname"]:
        raise CheckFailed(f"the container's hostname {c.get('hostname')!r} should be its own")
    if c.get("keys") != "0" or shared.get("keys") is not False:
        raise CheckFailed(
            f"/proc/keys inside a pyvmm container is masked (0 lines), reported {c.get('keys')!r}"
        )
    # Values the check draws, printed by a stand-in for `pyvmm container run`: facts
    # taken from the host and edited to look like a container's cannot follow them.
    drawn = dict(zip(FACTS, (f"{fact}-{secrets.token_hex(3)}" for fact in FACTS), strict=True))
    drawn["keys"], drawn["modules"] = str(secrets.randbelow(90)), str(100 + secrets.randbelow(900))
    script = (
        '[ "$1 $2" = "container run" ] || { echo "not pyvmm container run: $*" >&2; exit 2; }; '
        f"printf '%s\\n' {' '.join(drawn.values())}"
    )
    proc = _with_stand_in(workdir, "container_facts", script)
    if _answer(proc) != drawn:
        raise CheckFailed(
            f"with PYVMM a stand-in whose 'container run' prints {list(drawn.values())}, "
            f"container_facts() gave:\n{tail(proc)}\n      the facts must be read from "
            "inside the container, from the output of PYVMM + ['container', 'run', ...]"
        )
    return "same kernel release, boot id and modules; its own hostname; /proc/keys masked"


# shares.shared on facts the check makes up: each fact equal, then each different, so
# that every verdict must flip with the data (a hard-coded answer right for this host
# cannot follow both).
_SHARED = (
    "import json, sys, shares; "
    "print(json.dumps([shares.shared(h, c) for h, c in json.loads(sys.argv[1])]))"
)


def shared_follows_the_facts(workdir: Path) -> str:
    host = {fact: f"host-{fact}" for fact in FACTS}
    odd = {fact: host[fact] if i % 2 else f"other-{fact}" for i, fact in enumerate(FACTS)}
    even = {fact: f"other-{fact}" if i % 2 else host[fact] for i, fact in enumerate(FACTS)}
    cases = [(host, odd), (host, even)]
    proc = run_student([sys.executable, "-c", _SHARED, json.dumps(cases)], workdir, timeout=30)
    try:
        answers = json.loads(proc.stdout)
    except ValueError:
        raise CheckFailed(f"shares.shared(host, container) did not run:\n{tail(proc)}") from None
    for (h, c), got in zip(cases, answers, strict=True):
        want = {fact: h[fact] == c[fact] for fact in FACTS}
        if got != want:
            raise CheckFailed(
                f"shared(host, container) for {c} (host {h}) gave {got}: compare each "
                f"fact's two values"
            )
    return "each fact shared exactly when the two values are equal"


def vm_runs_its_own_kernel(workdir: Path) -> str:
    got = _report(workdir).get("vm_kernel")
    if got != "pyvmm tiny kernel":
        raise CheckFailed(f"vm_kernel is {got!r}: what does the VM's first line say?")
    kernel = f"stand-in kernel {secrets.token_hex(4)}"
    boot = f'echo "{kernel}: up"; echo "second line: {secrets.token_hex(4)}"'
    proc = _with_stand_in(workdir, "vm_kernel", boot)
    if _answer(proc) != kernel:
        raise CheckFailed(
            f"with PYVMM a stand-in whose boot prints '{kernel}: up' first, vm_kernel() "
            f"gave:\n{tail(proc)}\n      it should read the VM's first line up to ':'"
        )
    return "the VM: pyvmm tiny kernel, not the host's (read from its first line)"


CHECKS = [
    Check(
        "the host's facts are right",
        "read them with PROBE in a shell on the host",
        host_facts_are_right,
    ),
    Check(
        "the container shares the host's kernel, not its hostname",
        "compare value by value; /proc/keys is the host's keyring, so pyvmm masks it",
        container_shares_the_kernel,
    ),
    Check(
        "the report's shared follows the facts",
        "shared(host, container): one boolean per fact of FACTS, its two values equal",
        shared_follows_the_facts,
    ),
    Check(
        "the VM runs a kernel of its own",
        "the first line of the output of PYVMM + ['boot'], up to the ':'",
        vm_runs_its_own_kernel,
    ),
]
