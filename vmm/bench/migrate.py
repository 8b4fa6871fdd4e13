"""``pyvmm bench migrate``: live migration of an idle Linux guest, pyvmm beside QEMU.

The guest is pyvmm's Linux kernel and initramfs with 256 MiB, booted with ``pyvmm.wait``
so that its /init sits waiting for a console line: idle but for its tick. pyvmm boots
one copy and QEMU microvm (on the same KVM) another, one after the other; then each is moved
``hops`` times on this host through a Unix socket, the destination of one hop the source
of the next, QEMU's hops and pyvmm's taking turns so that a change of load falls on
both. Each VMM's own figures are kept: pyvmm's from ``pyvmm ctl SOCKET migrate`` (the
downtime is from the pause to the destination's word that the state is in its KVM,
docs/state.md), QEMU's from its monitor's ``info migrate`` after ``migrate -d`` with its
default parameters (its downtime is from the source's stop to the end of the stream).
At the end the last copy of each is given the console line, and must answer it: a guest
that did not survive its moves is a failed benchmark, not a figure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

from vmm.bench.measure import interrupt, pyvmm_command, read_until, summary
from vmm.bench.rows import LINUX_GUEST_MEMORY, hmp, microvm_command
from vmm.errors import PyvmmError

BOOT_TIMEOUT = 600.0  # seconds for a Linux boot to /init's wait under PVM on a busy host
HOP_TIMEOUT = 120.0
# What /init prints once given its line with no disk (vmm/guests/linux.py's INIT).
ANSWER = b"init: no /dev/vda"
_QEMU_FIGURE = re.compile(r"^(total time|downtime|setup): (\d+) ", re.M)
_QEMU_RAM = re.compile(r"^transferred ram: (\d+) kbytes", re.M)


def _wait_for(path: str, proc: subprocess.Popen, what: str) -> None:
    """Until ``path`` exists (a socket the process makes) or the process is gone."""
    started = time.perf_counter()
    while not os.path.exists(path):
        if proc.poll() is not None or time.perf_counter() - started > HOP_TIMEOUT:
            raise PyvmmError(f"{what} did not start (exit status {proc.returncode})")
        time.sleep(0.02)


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


class _Pyvmm:
    name = "pyvmm"

    def __init__(self, vmlinux: str, initramfs: str, scratch: str, wait_cmdline: str):
        self.scratch = scratch
        self.first = [
            *pyvmm_command(), "boot", "--kernel", vmlinux, "--initrd", initramfs,
            "--memory", LINUX_GUEST_MEMORY, "--cmdline", wait_cmdline,
        ]  # fmt: skip
        self.commands: list[list[str]] = []

    def start(self, hop: int, incoming: str | None) -> tuple[subprocess.Popen, str]:
        control = os.path.join(self.scratch, f"pyvmm-{hop}.sock")
        if incoming:
            argv = [*pyvmm_command(), "boot", "--incoming", f"unix:{incoming}"]
        else:
            argv = self.first
        argv = [*argv, "--api-sock", control]
        self.commands.append(argv)
        proc = _start(argv)
        if incoming:
            _wait_for(incoming, proc, "pyvmm --incoming")
        return proc, control

    def migrate(self, control: str, incoming: str) -> dict:
        from vmm.control import api

        figures = api.request(control, "migrate", to=f"unix:{incoming}")
        return {
            "downtime_ms": figures["downtime_ms"],
            "total_ms": figures["total_seconds"] * 1e3,
            "rounds": figures["rounds"],
            "mib_sent": figures["bytes_sent"] / (1 << 20),
        }

    def ready(self, control: str, proc: subprocess.Popen) -> None:
        """The destination serves its control socket once the guest runs there."""
        from vmm.control import api

        started = time.perf_counter()
        while True:
            try:
                api.request(control, "stats")
                return
            except api.ApiError:
                if proc.poll() is not None or time.perf_counter() - started > HOP_TIMEOUT:
                    raise PyvmmError("the migrated pyvmm guest did not come up") from None
                time.sleep(0.02)


class _Qemu:
    name = "qemu"

    def __init__(self, vmlinux: str, initramfs: str, pvm: bool, scratch: str, wait_cmdline: str):
        self.scratch = scratch
        self.argv = microvm_command(vmlinux, initramfs, pvm, wait_cmdline)
        self.commands: list[list[str]] = []

    def start(self, hop: int, incoming: str | None) -> tuple[subprocess.Popen, str]:
        monitor = os.path.join(self.scratch, f"qemu-{hop}.sock")
        argv = [*self.argv, "-monitor", f"unix:{monitor},server=on,wait=off"]
        if incoming:
            argv += ["-incoming", f"unix:{incoming}"]
        self.commands.append(argv)
        proc = _start(argv)
        _wait_for(monitor, proc, "QEMU")
        if incoming:
            _wait_for(incoming, proc, "QEMU -incoming")
        return proc, monitor

    def migrate(self, monitor: str, incoming: str) -> dict:
        started = time.perf_counter()
        hmp(monitor, f"migrate -d unix:{incoming}")
        while True:
            info = hmp(monitor, "info migrate")
            if "Migration status: completed" in info:
                break
            if "Migration status: failed" in info or time.perf_counter() - started > HOP_TIMEOUT:
                raise PyvmmError(f"QEMU's migration did not complete: {info.strip()[-200:]}")
            time.sleep(0.01)
        figures = {k: int(v) for k, v in _QEMU_FIGURE.findall(info)}
        ram = _QEMU_RAM.search(info)
        return {
            "downtime_ms": figures["downtime"],
            "total_ms": figures["total time"],
            "setup_ms": figures.get("setup"),
            "mib_sent": int(ram.group(1)) / 1024 if ram else None,
        }

    def ready(self, monitor: str, proc: subprocess.Popen) -> None:
        started = time.perf_counter()
        while "running" not in hmp(monitor, "info status"):
            if proc.poll() is not None or time.perf_counter() - started > HOP_TIMEOUT:
                raise PyvmmError("the migrated QEMU guest did not come up")
            time.sleep(0.02)


def measure(hops: int = 5) -> dict:
    from vmm.bench import linux_vm
    from vmm.guests import linux as linux_guest
    from vmm.kvm.kind import kvm_kind

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise PyvmmError("no usable /dev/kvm")
    setup: list[list[str]] = []
    linux_vm.ensure_tools(setup)
    build = linux_guest.build_kernel(say=lambda m: print(m, file=sys.stderr, flush=True))
    initramfs = linux_guest.build_initramfs()
    pvm = kvm_kind()["kind"] == "pvm"
    wait = f"console=ttyS0 {linux_guest.WAIT_PARAM}"
    wait_line = linux_guest.WAIT_LINE.encode()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-migrate-") as scratch:
        vmms = [_Pyvmm(build.vmlinux, initramfs, scratch, wait),
                _Qemu(build.vmlinux, initramfs, pvm, scratch, wait)]  # fmt: skip
        live: dict[str, tuple[subprocess.Popen, str]] = {}
        result: dict = {"hops": {v.name: [] for v in vmms}, "boot_to_wait_s": {}}
        try:
            for vmm in vmms:  # one at a time: a boot given half a CPU can stall (state.md)
                live[vmm.name] = vmm.start(0, None)
                result["boot_to_wait_s"][vmm.name] = round(
                    read_until(live[vmm.name][0], wait_line, BOOT_TIMEOUT,
                                f"{vmm.name}'s Linux boot"), 1
                )  # fmt: skip
            for hop in range(1, hops + 1):
                for vmm in vmms:
                    source, control = live[vmm.name]
                    incoming = os.path.join(scratch, f"{vmm.name}-{hop}.migrate")
                    dest = vmm.start(hop, incoming)
                    live[vmm.name] = dest
                    result["hops"][vmm.name].append(vmm.migrate(control, incoming))
                    vmm.ready(dest[1], dest[0])
                    interrupt(source)
            for vmm in vmms:
                proc = live[vmm.name][0]
                proc.stdin.write(b"\n")
                proc.stdin.flush()
                read_until(proc, ANSWER, HOP_TIMEOUT, f"{vmm.name}'s migrated guest")
        finally:
            for proc, _ in live.values():
                interrupt(proc)
    load.append(os.getloadavg()[0])
    for vmm in vmms:
        hops_of = result["hops"][vmm.name]
        result[vmm.name] = {
            k: summary([h[k] for h in hops_of]) for k in ("downtime_ms", "total_ms", "mib_sent")
        }
        result["commands_" + vmm.name] = vmm.commands[:2]
    result["load_average"] = load
    result["guest_memory"] = LINUX_GUEST_MEMORY
    return result


def table(r: dict) -> str:
    def cell(name: str, key: str) -> str:
        s = r[name][key]
        return f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"

    rows = [("figure (medians [min-max])", "pyvmm", "QEMU", "pyvmm/QEMU")]
    for key, label in (("downtime_ms", "downtime (ms)"), ("total_ms", "total time (ms)"),
                       ("mib_sent", "MiB sent")):  # fmt: skip
        ratio = r["pyvmm"][key]["median"] / max(r["qemu"][key]["median"], 1e-9)
        rows.append((label, cell("pyvmm", key), cell("qemu", key), f"{ratio:.2f}"))
    boot = r["boot_to_wait_s"]
    rows.append(("boot to /init's wait (s, once)", f"{boot['pyvmm']}", f"{boot['qemu']}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    hops = r["pyvmm"]["downtime_ms"]["runs"]
    lines.append(
        f"idle Linux guest, {r['guest_memory']}, {hops} hops each through a Unix socket, "
        f"taking turns; load average {r['load_average'][0]:.1f} -> {r['load_average'][1]:.1f}"
    )
    rounds = [h["rounds"] for h in r["hops"]["pyvmm"]]
    lines.append(f"pyvmm's pre-copy rounds per hop: {rounds}")
    return "\n".join(lines)
