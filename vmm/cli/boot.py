"""``pyvmm boot``: build a machine from the options, run it, exit with the guest's status.

A boot is measured as a whole process (docs/bench.md, "Start-up budget"), so its flags
are a table parsed by ``flags.py``, not click or argparse, whose imports alone cost
several times and half the interpreter's own start; ``vmm/cli/entry.py`` comes straight
here. Everything a plain boot does not need (the tracer, the stats, the profiler, the
gdb stub, the help screen's formatting) is imported only when asked for.
"""

from __future__ import annotations

import contextlib
import os
import sys

from vmm.cli.finish import end_if_stdout_gone
from vmm.cli.flags import Args, Optional, help_lines, parse_flags, set_arguments
from vmm.errors import PyvmmError, report
from vmm.guests import tiny as guest
from vmm.memory import parse_size

KVM_DEVICE_ENV = "PYVMM_KVM_DEVICE"  # another path for /dev/kvm (tests use it)
MAX_VIRTIO = 4  # the boot-info block has room for four virtio devices


def _memory(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise PyvmmError(f"--memory: {e}") from None


def _cpus(text: str) -> int:
    """A count, checked here so that a typo is one line."""
    from vmm.vm.machine import check_cpus

    try:
        return check_cpus(int(text))
    except ValueError:
        raise PyvmmError(f"--cpus: {text!r} is not a number") from None


def _cmdline(text: str) -> str:
    """The command line as given; bytes that are not UTF-8 (Python keeps them as lone
    surrogates, PEP 383) are refused here rather than failing as the guest's copy is made."""
    try:
        text.encode()
    except UnicodeEncodeError as e:
        bad = os.fsencode(text[e.start : e.end])
        raise PyvmmError(
            f"--cmdline is not UTF-8 text: byte {bad[0]:#04x} at character {e.start}"
        ) from None
    return text


# What a snapshot or an incoming guest brings with it, and may not be given as well.
_SAVED_BRINGS = (
    "kernel", "program", "initrd", "memory", "cpus", "cmdline", "disks", "nets", "publish",
    "gdb_address",
)  # fmt: skip


def _check_saved_options(options: dict, restore: str | None, incoming: str | None) -> None:
    if restore is not None and incoming is not None:
        raise PyvmmError("--restore and --incoming: a guest comes from one or the other")
    defaults = parse([])
    given = [n for n in _SAVED_BRINGS if options[n] != defaults[n]]
    if given:
        option = "--" + given[0].replace("_address", "")
        raise PyvmmError(
            f"{option} with {'--restore' if restore else '--incoming'}: the guest's kernel, "
            "memory, vCPUs and disks are the saved ones"
        )


def _serve_api(path: str, machine):
    """The control socket, its pause gate installed on this (the vCPU's) thread."""
    from vmm.control.api import ApiServer, Controller
    from vmm.control.pause import PauseGate

    gate = PauseGate()
    gate.install(machine)
    return ApiServer(path, Controller(machine, gate)), gate


DESCRIPTION = """Boot a guest on KVM and run it until it powers off.

With no --kernel, boots the bundled tiny kernel, which runs a program in ring 3. The exit
status is the guest's (the program's exit status for the tiny kernel); 125 when the VM
itself failed (triple fault, KVM error), with a report on stderr; 130 after Ctrl-C."""


# The flags (vmm/cli/flags.py says what each field means).
FLAGS = (
    ("--kernel", "kernel", str, None,
     "Kernel to boot: an ELF64 kernel, a Linux vmlinux (PVH) or bzImage, or a flat 16-bit "
     "binary, a regular file no larger than guest memory. Default: the bundled tiny kernel "
     "(built on first use).", "PATH"),
    ("--program", "program", str, None,
     "Static x86-64 Linux executable (ELF64) for the tiny kernel to run in ring 3, a regular "
     "file no larger than guest memory. Default: the bundled demo program.", "PATH"),
    ("--initrd", "initrd", str, None,
     "Initial RAM disk for a Linux kernel (an ELF vmlinux with a PVH note, or a bzImage).",
     "PATH"),
    ("-m --memory", "memory", str, "64M",
     "Guest RAM, e.g. 64M or 1G; mapped lazily, but no more than the host will map.", "SIZE"),
    ("--cpus", "cpus", str, "1",
     "vCPUs, each on a host thread of its own; Linux finds them in the MP table and the "
     "tiny kernel starts them itself (1 to 16).", "N"),
    ("--cmdline", "cmdline", str, guest.DEFAULT_CMDLINE,
     "Kernel command line (UTF-8); words after '--' become the program's arguments.",
     "TEXT"),
    ("--disk", "disks", list, None,
     "Raw disk image (a regular file or a block device) as a virtio-blk device (repeatable: "
     "/dev/vda, /dev/vdb, ...). ',ro' attaches it read-only; an image pyvmm may not write "
     "is refused without it. With the bundled kernel and no --program, the workload runs "
     "on /dev/vda.", "PATH[,ro]"),
    ("--net", "nets", list, None,
     "A virtio-net card (repeatable: eth0, eth1, ...) on a TAP: tap=NAME attaches to that "
     "TAP, or creates it and removes it at the end; bridge=NAME creates a TAP on that "
     "existing bridge. Needs CAP_NET_ADMIN. Give a Linux guest its address with the "
     "kernel's ip= on --cmdline (docs/networking.md).",
     "tap=NAME|bridge=NAME[,mac=MAC][,offload=off]"),
    ("-p --publish", "publish", list, None,
     "Forward a host port to the guest's (nftables DNAT, removed when the VM ends); the "
     "guest's address is the one ip= on --cmdline gives it.",
     "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]"),
    ("--ioeventfd", "ioeventfd", bool, False,
     "Serve virtqueue notifications on an I/O thread woken by ioeventfd, not in the vCPU's "
     "exit loop."),
    ("--interrupts", "interrupts", bool, False,
     "The tiny kernel takes interrupts (local APIC timer, UART, virtio through the IOAPIC) "
     "and sleeps in HLT, rather than polling its devices."),
    ("--trace", "trace", bool, False,
     "Print every VM exit, with the guest instruction behind it disassembled, to stderr."),
    ("--stats", "stats", bool, False,
     "Print exit counts by reason and the time spent in the guest and in the VMM, to "
     "stderr."),
    ("--profile", "profile", bool, False,
     "Sample the guest's RIP every 5 ms and print where it spent its time (named from the "
     "System.map beside the kernel), to stderr."),
    ("--gdb", "gdb_address", Optional("127.0.0.1:1234"), None,
     "Wait for gdb on this address (default 127.0.0.1:1234) before the first instruction; "
     "then debug the guest from gdb (target remote).", "[HOST:]PORT"),
    ("--gdb-allow-remote", "gdb_allow_remote", bool, False,
     "Let --gdb listen on a non-loopback address."),
    ("--api-sock", "api_sock", str, None,
     "Serve the control API on this Unix socket (a new path): pyvmm ctl PATH pause, "
     "resume, stats, snapshot DIR, migrate --to ADDRESS.", "PATH"),
    ("--restore", "restore", str, None,
     "Go on from a snapshot (pyvmm ctl ... snapshot DIR) instead of booting: its memory, "
     "vCPU and devices; its disks are reattached by path.", "DIR"),
    ("--incoming", "incoming", str, None,
     "Wait on this address for a guest sent by pyvmm ctl ... migrate, and run it.",
     "unix:PATH|tcp:HOST:PORT"),
    ("-h --help", "help", bool, False, "Show this message and exit."),
)  # fmt: skip


def parse(argv: list[str]) -> dict:
    """The options of ``pyvmm boot ARGV``, by name (``boot``'s parameters, and help)."""
    args = Args()
    set_arguments(args, parse_flags(args, argv, FLAGS, (), "boot: "), (), "boot: ")
    return vars(args)


def _help() -> str:
    """The help screen, as wide as the terminal (``COLUMNS`` first, as shutil says)."""
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 80
    with contextlib.suppress(ValueError):
        columns = int(os.environ.get("COLUMNS", "")) or columns
    import textwrap

    about = [textwrap.fill(p, columns - 2) for p in DESCRIPTION.split("\n\n")]
    lines = ["usage: pyvmm boot [flags]", "", "\n\n".join(about), "", "flags:"]
    return "\n".join(lines + help_lines(FLAGS, columns - 2))


def main(argv: list[str]) -> int:
    """``pyvmm boot ARGS``: its exit status. Errors are one line (``report``)."""
    try:
        options = parse(argv)
        if options.pop("help"):
            print(_help())
            return 0
        if options["restore"] is not None or options["incoming"] is not None:
            _check_saved_options(options, options["restore"], options["incoming"])
        return boot(**options)
    except (PyvmmError, KeyboardInterrupt) as e:
        return report(e)
    except BrokenPipeError:  # `pyvmm boot --help | head -1`
        end_if_stdout_gone()
        raise


def boot(
    kernel,
    program,
    initrd,
    memory,
    cpus,
    cmdline,
    disks,
    nets,
    publish,
    ioeventfd,
    interrupts,
    trace,
    stats,
    profile,
    gdb_address,
    gdb_allow_remote,
    api_sock,
    restore,
    incoming,
) -> int:
    """Build the machine from the options, run it, and return the guest's exit status."""
    from vmm.kvm import Kvm
    from vmm.kvm.kind import kvm_kind
    from vmm.vm.console import Console
    from vmm.vm.machine import Machine, MachineConfig

    memory_size = _memory(memory)
    cpus = _cpus(cpus)
    cmdline = _cmdline(cmdline)
    disk_list = ()
    if disks:  # virtio (and its dataclasses) only for a machine with disks or cards
        from vmm.devices.virtio.blk import parse_disk_option

        disk_list = tuple(parse_disk_option(d) for d in disks)
    net_list = ()
    if nets:
        from vmm.devices.virtio.net import parse_net_option

        net_list = tuple(parse_net_option(n) for n in nets)
    if len(disk_list) + len(net_list) > MAX_VIRTIO:
        raise PyvmmError(f"at most {MAX_VIRTIO} --disk and --net options together")
    published = None
    if publish:
        from vmm.hostnet.publish import guest_address, parse_publish

        if not net_list:
            raise PyvmmError("-p needs a network card: --net tap=NAME or bridge=NAME")
        ports_wanted = [parse_publish(p) for p in publish]
        published = (guest_address(cmdline), ports_wanted)
    # Only a kernel of the user's can be Linux, which needs to know whether KVM is PVM.
    pvm = kernel is not None and kvm_kind()["kind"] == "pvm"
    saved = None
    if restore is not None:
        from vmm.control.snapshot import load

        saved = load(restore)
    elif incoming is not None:
        from vmm.control.migration import receive

        saved = receive(incoming)
    elif kernel is None:
        kernel, program, cmdline = guest.bundled_boot(program, cmdline, bool(disk_list))
    listener = None
    if gdb_address is not None:
        from vmm.debug.gdb import stub as gdbstub

        listener = gdbstub.listen(gdb_address, gdb_allow_remote)
    kvm = Kvm(os.environ.get(KVM_DEVICE_ENV, "/dev/kvm"))
    console = Console()
    debugger = None
    if saved is not None:
        config = saved.machine_config(console.output)
    else:
        config = MachineConfig(
            kernel, memory_size, cmdline, program, console.output, disk_list, ioeventfd,
            initrd=initrd, pvm=pvm, nets=net_list, cpus=cpus, interrupts=interrupts,
        )  # fmt: skip
    sampler = None
    server = gate = None
    ports = None
    try:
        if published is not None:
            from vmm.hostnet.publish import PortTable

            ports = PortTable(*published)
        with Machine(config, kvm) as machine:
            if (trace or stats) and machine.cmdline != cmdline:
                print(f"pyvmm: Linux command line: {machine.cmdline}", file=sys.stderr)
            if trace:
                from vmm.debug.trace import Tracer

                tracer = Tracer(machine.memory, cpus=len(machine.vcpus))
                machine.after_run.append(tracer)
                machine.on_irq.append(tracer.irq_for(machine.vm))
            if stats:
                from vmm.debug.stats import ExitStats

                counter = ExitStats(len(machine.vcpus))
                machine.before_run.append(counter.before)
                machine.after_run.append(counter.after)
            if profile:
                from vmm.debug.profile import RipSampler

                sampler = RipSampler()
                machine.on_interrupt.append(sampler.sample)
                sampler.start(machine.threads.kick)
            if listener is not None:
                debugger = gdbstub.attach(machine, listener, kvm)
            if api_sock is not None:
                server, gate = _serve_api(api_sock, machine)
            console.start_input(machine.serial.receive)
            try:
                result = machine.run()
            finally:
                if gate is not None:
                    gate.end()
                    server.close()
                if sampler:
                    sampler.stop()
            if debugger is not None:
                debugger.finish(result.status)
            disks, cards = machine.disks, machine.nets
            touched = machine.memory.touched_bytes() if stats else None
    finally:
        if saved is not None:
            saved.close()
        if debugger is not None:
            debugger.close()
        elif listener is not None:
            listener.close()
        console.close()
        kvm.close()
        if ports is not None:
            ports.close()
    if stats:
        print(counter.report(disks, touched, cards), file=sys.stderr)
    if sampler:
        from vmm.debug.profile import system_map_for

        print(sampler.report(system_map_for(kernel) if kernel else None), file=sys.stderr)
    if result.failed:
        print(f"pyvmm: {result.reason}", file=sys.stderr)
        if result.report:
            print(result.report, file=sys.stderr)
    return result.status
