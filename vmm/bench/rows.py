"""The ways the one workload is run: each row of the comparison, and what it needs.

A row knows how to get ready (and says why it cannot), the command that runs one
instance, the figures only it can add after a run (what pyvmm measured from inside, the
guest memory touched, the cgroup's peak) and what it keeps on disk. Timing, checking
the result line and summarising are the same for every row and live in compare.py.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from vmm.bench.machineinfo import REPO
from vmm.bench.measure import (
    ProcessResult,
    apt_get,
    disk_usage,
    interrupt,
    pyvmm_command,
    read_until,
    run_checked,
)
from vmm.bench.workload import result_line
from vmm.devices.power import EXIT_PORT
from vmm.errors import PyvmmError
from vmm.guests import tiny as guest

IMAGE_REF = "workload:latest"
DATA = "/data"
TIMEOUT = 120.0
# The part of a row's disk figure that is the workload's data (the image file, the disk
# image, the volume holding its copy): every row has one, so sizes compare with and
# without it.
INPUT = "input data"


def instance_prefix() -> str:
    """Names of the containers this bench starts begin so: what an interrupted or failed
    run left behind can be found and removed."""
    return f"pyvmm-bench-{os.getpid()}-"


class Workspace(NamedTuple):
    """What every row shares: the input image, its expected line, a scratch directory,
    and the container state directory."""

    image: str
    expected: bytes
    scratch: str
    root: str


class Row:
    """One way of running the workload. Subclasses fill in the blanks."""

    key = ""
    label = ""
    kind = ""  # "floor", "pyvmm", "reference" or "custom"
    measures = ""  # one sentence for the report: what this row runs
    kernel = ""  # the kernel the workload's system calls reach; empty: the host's
    timeout = TIMEOUT

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.commands: list[list[str]] = []  # what preparing it ran
        self.facts: dict = {}  # what else the report should know, found while preparing
        self.last_command: list[str] = []

    def prepare(self, ws: Workspace) -> None:
        """Get ready; raise PyvmmError saying why if the row cannot run here."""

    def command(self, ws: Workspace, instance: str) -> list[str]:
        raise NotImplementedError

    def collect(
        self, ws: Workspace, instance: str, proc: ProcessResult, detailed: bool
    ) -> dict[str, float]:
        """Figures only this row has, after one run of ``instance`` (the costly ones only
        when ``detailed``), named as in the JSON (``inside_ms``, ``cgroup_peak_bytes``...);
        clean up after the run whether it worked or not."""
        return {}

    def disk(self, ws: Workspace) -> dict[str, int]:
        """Bytes on disk of everything the row needs, by part, the data as ``INPUT``."""
        raise NotImplementedError

    def cleanup(self, ws: Workspace) -> None:
        """Undo ``prepare``."""


class HostRow(Row):
    key = "host"
    label = "host process"
    kind = "floor"
    measures = "the workload executable run directly on the host: the floor"

    def prepare(self, ws):
        guest.ensure_built(guest.WORKLOAD)

    def command(self, ws, instance):
        return [guest.WORKLOAD, ws.image]

    def disk(self, ws):
        return {
            "workload executable": disk_usage(guest.WORKLOAD),
            INPUT: disk_usage(ws.image),
        }


class TinyVmRow(Row):
    key = "tiny-vm"
    label = "tiny VM (pyvmm)"
    kind = "pyvmm"
    measures = (
        "`pyvmm boot --disk IMAGE`: pyvmm's tiny kernel runs the same executable in ring 3 "
        "on the image as a virtio-blk disk"
    )
    kernel = "its own, pyvmm's tiny kernel"

    def prepare(self, ws):
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise PyvmmError("no usable /dev/kvm")
        guest.ensure_built(guest.KERNEL, guest.WORKLOAD)
        from vmm.kvm import Kvm

        self.kvm = Kvm()

    def command(self, ws, instance):
        return [*pyvmm_command(), "boot", "--disk", ws.image]

    def collect(self, ws, instance, proc, detailed):
        """The same boot in this process: from the request to the first output byte (the
        kernel's banner) and to the result line, with the interpreter's start and imports
        already behind; and the guest RAM touched."""
        if not detailed:
            return {}
        from vmm.vm.machine import DEFAULT_MEMORY, Machine, MachineConfig

        output = bytearray()
        marks: list[float] = []  # first byte, then result line

        def on_output(data: bytes) -> None:
            output.extend(data)
            if not marks or (len(marks) == 1 and ws.expected + b"\n" in output):
                marks.append(time.perf_counter())

        t0 = time.perf_counter()
        kernel, program, cmdline = guest.bundled_boot(None, guest.DEFAULT_CMDLINE, True)
        config = MachineConfig(
            kernel,
            DEFAULT_MEMORY,
            cmdline,
            program,
            output=on_output,
            disks=((ws.image, False),),
        )
        with Machine(config, self.kvm) as machine:
            result = machine.run()
            touched = machine.memory.touched_bytes()
        line, _ = result_line(bytes(output))
        if result.failed or line != ws.expected:
            raise PyvmmError(f"the in-process run printed {line!r} ({result.reason})")
        return {
            "inside_ms": (marks[0] - t0) * 1e3,
            "inside_result_ms": (marks[-1] - t0) * 1e3,
            "guest_touched_bytes": touched,
        }

    def disk(self, ws):
        return {
            "tiny kernel": disk_usage(guest.KERNEL),
            "workload executable": disk_usage(guest.WORKLOAD),
            INPUT: disk_usage(ws.image),
        }

    def cleanup(self, ws):
        if hasattr(self, "kvm"):
            self.kvm.close()


def workload_image(ws: Workspace, commands: list[list[str]]):
    """The container store at ``ws.root`` with the workload image in it, built by the
    project's own script the first time (the command goes into the row's record)."""
    from vmm.container.image import images
    from vmm.container.store.state import Store

    store = Store(ws.root)
    try:
        images.get(store, IMAGE_REF)
    except PyvmmError:
        script = os.path.join(REPO, "scripts", "build_images.py")
        run_checked(
            [sys.executable, script, "--root", ws.root, "--workload", guest.WORKLOAD], commands
        )
    _same_workload(store)
    return store


def _same_workload(store) -> None:
    """The comparison is fair only if the image holds the very executable the other rows
    run: compare the topmost layer's /bin/workload with it, byte for byte."""
    from vmm.container.image import images
    from vmm.container.store import layers

    for digest in reversed(images.get(store, IMAGE_REF).layers):
        path = layers.layer_dir(store, digest) / "bin" / "workload"
        if path.exists():
            with open(guest.WORKLOAD, "rb") as built:
                if path.read_bytes() == built.read():
                    return
            raise PyvmmError(
                f"{IMAGE_REF} in {store.root} holds another /bin/workload than "
                f"{guest.WORKLOAD}: rebuild it with scripts/build_images.py"
            )
    raise PyvmmError(f"{IMAGE_REF} in {store.root} has no /bin/workload")


class ContainerRow(Row):
    """``pyvmm container run``, the data through a named volume or a bind mount."""

    kind = "pyvmm"

    def __init__(self, volume: bool):
        super().__init__()
        self.volume = volume
        self.key = "container-volume" if volume else "container-bind"
        self.label = "container, volume" if volume else "container, bind mount"
        how = "a named volume holding a copy of the image" if volume else "a bind mount of it"
        self.measures = f"`pyvmm container run` of the workload image, the input through {how}"
        self.writable = 0

    def prepare(self, ws):
        if os.geteuid() != 0:
            raise PyvmmError("containers need root")
        from vmm.container.engine import volumes

        self.store = workload_image(ws, self.commands)
        if self.volume:
            self.volume_name = f"pyvmm-bench-{os.getpid()}"
            with self.store.lock():
                volumes.create(self.store, self.volume_name)
            self.data = volumes.data_dir(self.store, self.volume_name)
            shutil.copyfile(ws.image, os.path.join(self.data, "input.img"))
            self.spec = f"{self.volume_name}:{DATA}"
        else:
            self.data = os.path.dirname(ws.image)
            self.spec = f"{self.data}:{DATA}"

    def command(self, ws, instance):
        return [
            *pyvmm_command(),
            "--root",
            ws.root,
            "container",
            "run",
            "--name",
            instance,
            "-v",
            self.spec,
            IMAGE_REF,
            "/bin/workload",
            f"{DATA}/{os.path.basename(ws.image)}",
        ]

    def collect(self, ws, instance, proc, detailed):
        """What pyvmm recorded from inside (request to first output), the cgroup's peak,
        and the size of the writable layer, read before the container is removed.

        The workload prints one line only, so when the output starts with it (checked
        here), pyvmm's first output is the result line and the figure stands for both."""
        from vmm.container.engine import container as lifecycle

        rec = lifecycle.find(self.store, instance)
        try:
            self.writable = disk_usage(str(self.store.containers / rec.id / "upper"))
            figures = {}
            if rec.peak_memory is not None:
                figures["cgroup_peak_bytes"] = rec.peak_memory
            first = rec.timings.get("first_output_s")
            if first is not None:
                figures["inside_ms"] = first * 1e3
                if proc.stdout.startswith(ws.expected):
                    figures["inside_result_ms"] = first * 1e3
            return figures
        finally:
            lifecycle.remove(self.store, instance, force=True)

    def disk(self, ws):
        from vmm.container.image import images
        from vmm.container.store import layers

        digests = images.get(self.store, IMAGE_REF).layers
        parts = {
            f"image layers ({len(digests)}, each once)": disk_usage(
                *(str(layers.layer_dir(self.store, d)) for d in digests)
            ),
            "writable layer": self.writable,
        }
        if self.volume:
            parts[INPUT] = disk_usage(self.data)  # the volume: the copy of the image
        else:
            parts[INPUT] = disk_usage(ws.image)
        return parts

    def cleanup(self, ws):
        """Remove the containers a failed or interrupted run left, then the volume."""
        if not hasattr(self, "store"):
            return
        from vmm.container.engine import container as lifecycle
        from vmm.container.engine import volumes

        for rec in lifecycle.list_containers(self.store):
            if rec.name.startswith(instance_prefix()):
                lifecycle.remove(self.store, rec.name, force=True)
        if self.volume:
            with self.store.lock():
                volumes.remove(self.store, self.volume_name, [])


class OciRow(Row):
    """crun or runc on the workload image's layers copied into one root filesystem."""

    kind = "reference"

    def __init__(self, runtime: str):
        super().__init__()
        self.runtime = runtime
        self.key = runtime
        self.label = f"{runtime} [ref]"
        self.measures = (
            f"`{runtime} run` of an OCI bundle: the image's layers copied into one rootfs, "
            "the input bind-mounted (reference: another runtime, same files)"
        )

    def prepare(self, ws):
        if os.geteuid() != 0:
            raise PyvmmError(f"{self.runtime} needs root")
        if not shutil.which(self.runtime):
            apt_get(["install", "-y", "-qq", self.runtime], self.commands)
        from vmm.bench import container_startup as bench

        store = workload_image(ws, self.commands)
        bundle = Path(ws.scratch) / f"bundle-{self.runtime}"
        if not (Path(ws.scratch) / "rootfs").exists():
            bench.flat_rootfs(store, IMAGE_REF, Path(ws.scratch) / "rootfs")
        args = ["/bin/workload", f"{DATA}/{os.path.basename(ws.image)}"]
        bench.oci_bundle(
            Path(ws.scratch) / "rootfs", bundle, args, {os.path.dirname(ws.image): DATA}
        )
        self.bundle = str(bundle)

    def command(self, ws, instance):
        from vmm.bench.container_startup import runtime_command

        return runtime_command(self.runtime, self.bundle, instance)

    def disk(self, ws):
        return {
            "root filesystem": disk_usage(os.path.join(ws.scratch, "rootfs")),
            INPUT: disk_usage(ws.image),
        }

    def cleanup(self, ws):
        """``run`` deletes its container when it ends; one that was killed (a timeout,
        Ctrl-C) stays in the runtime's state until deleted."""
        if not shutil.which(self.runtime):
            return
        listed = run_checked([self.runtime, "list", "-q"], [])
        for name in listed.split():
            if name.startswith(instance_prefix()):
                run_checked([self.runtime, "delete", "--force", name], self.commands)


class LinuxVmRow(Row):
    key = "linux-vm"
    kind = "reference"
    timeout = 600.0

    def __init__(self):
        super().__init__()
        self.label = "Linux VM, QEMU [ref]"
        self.measures = (
            "Debian's cloud kernel with a busybox initramfs under qemu-system-x86_64, the "
            "image as a virtio disk (reference: a general-purpose kernel's boot)"
        )

    def prepare(self, ws):
        from vmm.bench import linux_vm

        self.vm = linux_vm.prepare(guest.WORKLOAD, self.commands)
        self.label = f"Linux VM, QEMU {self.vm.accel.upper()} [ref]"
        self.kernel = f"its own, Linux from {self.vm.package}"
        self.facts = {
            "accelerator": self.vm.accel,
            "kernel_package": self.vm.package,
            "kernel_package_bytes": disk_usage(self.vm.package_dir),
        }
        if self.vm.accel == "tcg":
            self.notes.append(
                "QEMU emulated the CPU (TCG): this host's KVM cannot boot a stock Linux "
                "kernel, so these times are an emulated machine's, not a KVM guest's"
            )

    def command(self, ws, instance):
        from vmm.bench import linux_vm

        return linux_vm.command(self.vm, ws.image)

    def disk(self, ws):
        return {
            "kernel": disk_usage(self.vm.kernel),
            "initramfs": disk_usage(self.vm.initramfs),
            INPUT: disk_usage(ws.image),
        }


# isa-debug-exit makes QEMU exit with (status << 1) | 1; anything even is QEMU's own.
QEMU_STATUS = '"$@"; s=$?; [ $((s & 1)) = 1 ] && exit $((s >> 1)); exit 125'
LINUX_INIT_MARK = b"Run /init as init process"
LINUX_GUEST_MEMORY = "256M"


class LinuxGuestRow(Row):
    """Linux built for pyvmm (guest/linux, docs/linux.md) with its plain-cpio initramfs
    (busybox, the workload, the exit helper), the image as /dev/vda: the kernel and
    initramfs are the same in both rows, so the VMMs are what differ. Beside the
    banner (the console's first byte), the result line and the exit: when the kernel
    started /init."""

    timeout = 600.0

    def prepare(self, ws):
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise PyvmmError("no usable /dev/kvm")
        from vmm.bench.machineinfo import kvm_kind
        from vmm.guests import linux as linux_guest

        # Built on first use, minutes: say so on stderr, away from the report.
        self.build = linux_guest.build_kernel(say=lambda m: print(m, file=sys.stderr, flush=True))
        self.initramfs = linux_guest.build_initramfs()
        self.pvm = kvm_kind()["kind"] == "pvm"
        self.kernel = "its own, Linux 6.1 tinyconfig built for pyvmm (guest/linux)"
        self.facts = {"kernel": self.build.vmlinux, "initramfs": self.initramfs}
        if self.pvm:
            self.notes.append(
                "PVM emulates guest ring 0: Linux's own boot runs some 1 us an instruction "
                "here (docs/linux.md); the command line carries PVM's masks"
            )

    def collect(self, ws, instance, proc, detailed):
        at = proc.stdout.find(LINUX_INIT_MARK)
        when = proc.time_of(at) if at >= 0 else None
        return {"init_ms": when * 1e3} if when is not None else {}

    def disk(self, ws):
        return {
            "kernel (vmlinux)": disk_usage(self.build.vmlinux),
            "initramfs": disk_usage(self.initramfs),
            INPUT: disk_usage(ws.image),
        }


class LinuxPyvmmRow(LinuxGuestRow):
    key = "linux-pyvmm"
    label = "Linux VM (pyvmm)"
    kind = "pyvmm"
    measures = (
        "`pyvmm boot --kernel vmlinux --initrd initramfs --disk IMAGE`: Linux entered "
        "through PVH, /init runs the same executable on /dev/vda"
    )

    def command(self, ws, instance):
        # --stats for the guest memory touched (its per-exit hooks cost some 12k
        # timestamps over a boot: nothing beside the seconds of a Linux boot here).
        return [
            *pyvmm_command(), "boot", "--kernel", self.build.vmlinux, "--initrd",
            self.initramfs, "--memory", LINUX_GUEST_MEMORY, "--disk", ws.image, "--stats",
        ]  # fmt: skip

    def collect(self, ws, instance, proc, detailed):
        from vmm.debug.stats import GUEST_TOUCHED

        figures = super().collect(ws, instance, proc, detailed)
        for line in proc.stderr.decode(errors="replace").splitlines():
            if line.startswith(GUEST_TOUCHED):
                figures["guest_touched_bytes"] = int(line.split()[-2]) * 1024
        return figures


@contextlib.contextmanager
def _waiting_guest(argv: list[str], timeout: float) -> Iterator[float]:
    """A Linux guest started with ``pyvmm.wait``, once its /init waits for the console
    line (yields the seconds that took); killed afterwards."""
    import subprocess

    from vmm.guests import linux as linux_guest

    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        what = f"the Linux guest ({argv[0]})"
        yield round(read_until(proc, linux_guest.WAIT_LINE.encode(), timeout, what), 2)
    finally:
        interrupt(proc)


class LinuxRestoredRow(LinuxGuestRow):
    """The same Linux guest, booted once while preparing with ``pyvmm.wait`` (its /init
    waits for a line on the console before the workload) and snapshotted there; each run
    restores that snapshot and hands it the line, as a VM kept warm for a request
    (Firecracker's use of snapshots). The boot is not in the figure; it is in the facts."""

    key = "linux-restored"
    label = "Linux VM, restored from a snapshot (pyvmm)"
    kind = "pyvmm"
    measures = (
        "`printf '\\n' | pyvmm boot --restore SNAPSHOT`: the Linux guest snapshotted (`pyvmm "
        "ctl SOCKET snapshot`) while its /init waited for a console line before running "
        "the workload on /dev/vda; restored, given the line, to the result line and the "
        "exit (the memory file mapped MAP_PRIVATE, docs/state.md)"
    )

    def prepare(self, ws):
        from vmm.control import api
        from vmm.guests import linux as linux_guest

        super().prepare(ws)
        self.snapshot = os.path.join(ws.scratch, "linux-snapshot")
        sock = os.path.join(ws.scratch, "linux-snapshot.sock")
        argv = [
            *pyvmm_command(), "boot", "--kernel", self.build.vmlinux, "--initrd",
            self.initramfs, "--memory", LINUX_GUEST_MEMORY, "--disk", ws.image,
            "--cmdline", f"console=ttyS0 {linux_guest.WAIT_PARAM}", "--api-sock", sock,
        ]  # fmt: skip
        self.commands.append(argv)
        with _waiting_guest(argv, self.timeout) as booted:
            figures = api.request(sock, "snapshot", dir=self.snapshot)
        self.facts.update(
            boot_to_wait_s=booted,
            snapshot_s=figures["seconds"],
            snapshot_memory_written=figures["memory_written"],
        )

    def command(self, ws, instance):
        restore = [*pyvmm_command(), "boot", "--restore", self.snapshot]
        return ["sh", "-c", 'printf "\\n" | exec "$@"', "sh", *restore]

    def disk(self, ws):
        return {
            "snapshot": disk_usage(self.snapshot),
            INPUT: disk_usage(ws.image),
        }

    def cleanup(self, ws):
        if hasattr(self, "snapshot"):
            shutil.rmtree(self.snapshot, ignore_errors=True)


def microvm_command(
    vmlinux: str, initramfs: str, pvm: bool, cmdline: str, image: str | None = None
) -> list[str]:
    """QEMU microvm on KVM with pyvmm's Linux kernel and initramfs, the same machine as
    pyvmm's (256 MiB, one CPU, the console on stdio, the exit port), ``image`` as its
    virtio-mmio disk."""
    from vmm.boot import linux

    append = linux.command_line(cmdline, (), pvm)
    disk = [
        "-device", "virtio-blk-device,drive=d",
        "-drive", f"id=d,file={image},format=raw,if=none,file.locking=off",
    ] if image else []  # fmt: skip
    return [
        "qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "kvm", "-cpu", "host",
        "-m", LINUX_GUEST_MEMORY, "-smp", "1", "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", "-serial", "stdio",
        "-kernel", vmlinux, "-initrd", initramfs, "-append", append,
        "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=1", *disk,
    ]  # fmt: skip


class LinuxMicrovmRow(LinuxGuestRow):
    key = "linux-microvm"
    label = "Linux VM (QEMU microvm, KVM, same kernel and initramfs)"
    kind = "reference"
    measures = (
        "qemu-system-x86_64 -M microvm,acpi=off on KVM with pyvmm's kernel and initramfs "
        "(PVH entry; without ACPI QEMU announces the virtio-mmio disk on the command line, "
        "as pyvmm does): the same guest under a production VMM. /init's exit helper writes "
        "to QEMU's isa-debug-exit at pyvmm's exit port, and QEMU exits with (status << 1) "
        "| 1, which a sh turns back into the status"
    )

    def prepare(self, ws):
        from vmm.bench import linux_vm

        linux_vm.ensure_tools(self.commands)
        super().prepare(ws)

    def command(self, ws, instance):
        return ["sh", "-c", QEMU_STATUS, "qemu", *self.qemu(ws, "console=ttyS0")]

    def qemu(self, ws, cmdline: str) -> list[str]:
        return microvm_command(self.build.vmlinux, self.initramfs, self.pvm, cmdline, ws.image)


class LinuxQemuRestoredRow(LinuxMicrovmRow):
    """QEMU's answer to the restored row: the same guest booted by QEMU microvm with
    ``pyvmm.wait``, saved with the monitor's ``stop`` and ``migrate`` to a file while /init
    waits, and each run restored from that file (``-incoming exec:cat FILE``) and given
    the line."""

    key = "linux-qemu-restored"
    label = "Linux VM, restored (QEMU loadvm or migrate from file)"
    measures = (
        "`printf '\\n' | qemu-system-x86_64 -M microvm ... -incoming 'exec:cat FILE'`: the "
        "same kernel, initramfs and disk under QEMU microvm on KVM, saved with the "
        "monitor's stop and migrate to a file while /init waited for a console line"
    )

    def prepare(self, ws):
        from vmm.guests import linux as linux_guest

        super().prepare(ws)
        self.saved = os.path.join(ws.scratch, "qemu-saved-vm")
        monitor = os.path.join(ws.scratch, "qemu-monitor.sock")
        argv = [
            *self.qemu(ws, f"console=ttyS0 {linux_guest.WAIT_PARAM}"),
            "-monitor", f"unix:{monitor},server=on,wait=off",
        ]  # fmt: skip
        self.commands.append(argv)
        with _waiting_guest(argv, self.timeout) as booted:
            started = time.perf_counter()
            hmp(monitor, "stop", f"migrate exec:cat>{shlex.quote(self.saved)}")
            while "completed" not in hmp(monitor, "info migrate"):
                if time.perf_counter() - started > self.timeout:
                    raise PyvmmError("QEMU did not finish saving the guest")
                time.sleep(0.05)
        self.facts.update(boot_to_wait_s=booted, save_s=round(time.perf_counter() - started, 3))

    def command(self, ws, instance):
        qemu = [*self.qemu(ws, "console=ttyS0"), "-incoming", f"exec:cat {shlex.quote(self.saved)}"]
        return ["sh", "-c", 'printf "\\n" | ' + QEMU_STATUS, "qemu", *qemu]

    def disk(self, ws):
        return {**super().disk(ws), "saved VM": disk_usage(self.saved)}

    def cleanup(self, ws):
        if hasattr(self, "saved") and os.path.exists(self.saved):
            os.unlink(self.saved)


def hmp(path: str, *commands: str) -> str:
    """Commands to QEMU's human monitor on a Unix socket; what it answered."""
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(path)
        answer = b""
        for command in (*commands, ""):
            while not answer.endswith(b"(qemu) "):
                answer += s.recv(4096)
            if command:
                s.sendall(command.encode() + b"\n")
                answer += b"\n"
        return answer.decode(errors="replace")


class CommandRow(Row):
    """A row from ``--row NAME=COMMAND``: any command, ``{image}`` replaced by the input
    image's path. Lets a user put another runtime (or a deliberately broken command)
    beside the others under the same timing and the same check of the result."""

    kind = "custom"

    def __init__(self, spec: str):
        super().__init__()
        name, sep, template = spec.partition("=")
        if not sep or not name.strip() or not template.strip():
            raise PyvmmError(f"--row {spec!r}: use NAME=COMMAND, e.g. 'mine=./run {{image}}'")
        self.key = self.label = name.strip()
        self.template = template
        self.measures = f"a command given on the command line: `{template}`"

    def command(self, ws, instance):
        try:
            return shlex.split(self.template.replace("{image}", shlex.quote(ws.image)))
        except ValueError as e:
            raise PyvmmError(f"--row {self.key}: {e}") from None

    def disk(self, ws):
        return {INPUT: disk_usage(ws.image)}


def standard_rows() -> list[Row]:
    return [
        HostRow(),
        TinyVmRow(),
        ContainerRow(volume=True),
        ContainerRow(volume=False),
        OciRow("crun"),
        OciRow("runc"),
        LinuxPyvmmRow(),
        LinuxRestoredRow(),
        LinuxMicrovmRow(),
        LinuxQemuRestoredRow(),
        LinuxVmRow(),
    ]
