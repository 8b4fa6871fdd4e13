"""``pyvmm boot``: build a machine from the options, run it, exit with the guest's status."""

from __future__ import annotations

import os
import sys

import click

from vmm import guest
from vmm.errors import PyvmmError
from vmm.memory import parse_size

KVM_DEVICE_ENV = "PYVMM_KVM_DEVICE"  # another path for /dev/kvm (tests use it)
MAX_VIRTIO = 4  # the boot-info block has room for four virtio devices


def _memory(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise PyvmmError(f"--memory: {e}") from None


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


@click.command()
@click.option(
    "--kernel",
    metavar="PATH",
    help="Kernel to boot: an ELF64 kernel, a Linux vmlinux (PVH) or bzImage, or a flat "
    "16-bit binary, a regular file no larger than guest memory. Default: the bundled tiny "
    "kernel (built on first use).",
)
@click.option(
    "--program",
    metavar="PATH",
    help="Static x86-64 Linux executable (ELF64) for the tiny kernel to run in ring 3, a "
    "regular file no larger than guest memory. Default: the bundled demo program.",
)
@click.option(
    "--initrd",
    metavar="PATH",
    help="Initial RAM disk for a Linux kernel (an ELF vmlinux with a PVH note, or a bzImage).",
)
@click.option(
    "--memory",
    "-m",
    default="64M",
    show_default=True,
    metavar="SIZE",
    help="Guest RAM, e.g. 64M or 1G; mapped lazily, but no more than the host will map.",
)
@click.option(
    "--cmdline",
    default=guest.DEFAULT_CMDLINE,
    show_default=True,
    help="Kernel command line (UTF-8); words after '--' become the program's arguments.",
)
@click.option(
    "--disk",
    "disks",
    multiple=True,
    metavar="PATH[,ro]",
    help="Raw disk image (a regular file or a block device) as a virtio-blk device "
    "(repeatable: /dev/vda, /dev/vdb, ...). ',ro' attaches it read-only; an image pyvmm "
    "may not write is refused without it. With the bundled kernel and no --program, the "
    "workload runs on /dev/vda.",
)
@click.option(
    "--net",
    "nets",
    multiple=True,
    metavar="tap=NAME|bridge=NAME[,mac=MAC][,offload=off]",
    help="A virtio-net card (repeatable: eth0, eth1, ...) on a TAP: tap=NAME attaches to "
    "that TAP, or creates it and removes it at the end; bridge=NAME creates a TAP on that "
    "existing bridge. Needs CAP_NET_ADMIN. Give a Linux guest its address with the "
    "kernel's ip= on --cmdline (docs/networking.md).",
)
@click.option(
    "--publish",
    "-p",
    "publish",
    multiple=True,
    metavar="[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]",
    help="Forward a host port to the guest's (nftables DNAT, removed when the VM ends); "
    "the guest's address is the one ip= on --cmdline gives it.",
)
@click.option(
    "--ioeventfd",
    is_flag=True,
    help="Serve disk requests on an I/O thread woken by ioeventfd, not in the vCPU's exit loop.",
)
@click.option(
    "--trace",
    is_flag=True,
    help="Print every VM exit, with the guest instruction behind it disassembled, to stderr.",
)
@click.option(
    "--stats",
    is_flag=True,
    help="Print exit counts by reason and the time spent in the guest and in the VMM, to stderr.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Sample the guest's RIP every 5 ms and print where it spent its time (named from "
    "the System.map beside the kernel), to stderr.",
)
@click.option(
    "--gdb",
    "gdb_address",
    is_flag=False,
    flag_value="127.0.0.1:1234",
    metavar="[HOST:]PORT",
    help="Wait for gdb on this address (default 127.0.0.1:1234) before the first "
    "instruction; then debug the guest from gdb (target remote).",
)
@click.option(
    "--gdb-allow-remote", is_flag=True, help="Let --gdb listen on a non-loopback address."
)
def boot(
    kernel,
    program,
    initrd,
    memory,
    cmdline,
    disks,
    nets,
    publish,
    ioeventfd,
    trace,
    stats,
    profile,
    gdb_address,
    gdb_allow_remote,
):
    """Boot a guest on KVM and run it until it powers off.

    With no --kernel, boots the bundled tiny kernel, which runs a program in ring 3.
    The exit status is the guest's (the program's exit status for the tiny kernel);
    125 when the VM itself failed (triple fault, KVM error), with a report on stderr;
    130 after Ctrl-C.
    """
    from vmm.bench.machineinfo import kvm_kind
    from vmm.console import Console
    from vmm.devices.virtio.blk import parse_disk_option
    from vmm.devices.virtio.net import parse_net_option
    from vmm.kvm import Kvm
    from vmm.machine import Machine, MachineConfig

    memory_size = _memory(memory)
    cmdline = _cmdline(cmdline)
    disk_list = tuple(parse_disk_option(d) for d in disks)
    net_list = tuple(parse_net_option(n) for n in nets)
    if len(disk_list) + len(net_list) > MAX_VIRTIO:
        raise PyvmmError(f"at most {MAX_VIRTIO} --disk and --net options together")
    if publish:
        from vmm.publish import PortTable, guest_address, parse_publish

        if not net_list:
            raise PyvmmError("-p needs a network card: --net tap=NAME or bridge=NAME")
        ports_wanted = [parse_publish(p) for p in publish]
        published = (guest_address(cmdline), ports_wanted)
    # Only a kernel of the user's can be Linux, which needs to know whether KVM is PVM.
    pvm = kernel is not None and kvm_kind()["kind"] == "pvm"
    if kernel is None:
        kernel, program, cmdline = guest.bundled_boot(program, cmdline, bool(disk_list))
    listener = None
    if gdb_address is not None:
        from vmm.gdb import stub as gdbstub

        listener = gdbstub.listen(gdb_address, gdb_allow_remote)
    kvm = Kvm(os.environ.get(KVM_DEVICE_ENV, "/dev/kvm"))
    console = Console()
    debugger = None
    config = MachineConfig(
        kernel, memory_size, cmdline, program, console.output, disk_list, ioeventfd,
        initrd=initrd, pvm=pvm, nets=net_list,
    )  # fmt: skip
    sampler = None
    ports = PortTable(*published) if publish else None
    try:
        with Machine(config, kvm) as machine:
            if (trace or stats) and machine.cmdline != cmdline:
                click.echo(f"pyvmm: Linux command line: {machine.cmdline}", err=True)
            if trace:
                from vmm.trace import Tracer

                machine.after_run.append(Tracer(machine.memory))
            if stats:
                from vmm.stats import ExitStats

                counter = ExitStats()
                machine.before_run.append(counter.before)
                machine.after_run.append(counter.after)
            if profile:
                from vmm.profile import RipSampler

                sampler = RipSampler()
                machine.on_interrupt.append(sampler.sample)
                sampler.start()
            if listener is not None:
                debugger = gdbstub.attach(machine, listener, kvm)
            console.start_input(machine.serial.receive)
            try:
                result = machine.run()
            finally:
                if sampler:
                    sampler.stop()
            if debugger is not None:
                debugger.finish(result.status)
            disks, cards = machine.disks, machine.nets
            touched = machine.memory.touched_bytes() if stats else None
    finally:
        if debugger is not None:
            debugger.close()
        elif listener is not None:
            listener.close()
        console.close()
        kvm.close()
        if ports is not None:
            ports.close()
    if stats:
        click.echo(counter.report(disks, touched, cards), err=True)
    if sampler:
        from vmm.profile import system_map_for

        click.echo(sampler.report(system_map_for(kernel)), err=True)
    if result.failed:
        click.echo(f"pyvmm: {result.reason}", err=True)
        if result.report:
            click.echo(result.report, err=True)
    sys.exit(result.status)
