"""A virtual machine put together: memory, a vCPU, the buses and devices, the exit loop.

The exit loop is the heart of a VMM. ``KVM_RUN`` runs the guest until it touches
something only the VMM can answer (a port, an unbacked address) or cannot go on; the
loop decodes that exit, hands port and MMIO accesses to the bus that owns the
address, and turns everything else into the end of the run with a clear reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vmm.boot import layout, linux, loader
from vmm.boot.bootinfo import VirtioSlot
from vmm.boot.loader import BootRequest
from vmm.boot.x86 import start_vcpu
from vmm.devices.power import (
    EXIT_PORT,
    EXIT_PORT_SIZE,
    I8042,
    I8042_DATA_PORT,
    ExitPort,
)
from vmm.devices.serial import COM1_BASE, COM1_IRQ, UART_NR_PORTS, Serial
from vmm.errors import INTERRUPTED_STATUS, PyvmmError
from vmm.guest_stop import GuestStop
from vmm.kvm import (
    DebugExit,
    FailEntryExit,
    HltExit,
    InternalErrorExit,
    InterruptedExit,
    IoExit,
    Kvm,
    MmioExit,
    ShutdownExit,
    cpuid,
    internal_error_name,
)
from vmm.memory import GuestMemory
from vmm.typedtuple import typed_tuple
from vmm.vm.bus import Bus
from vmm.vm.vcpus import VcpuGroup, VcpuThreads

DEFAULT_MEMORY = 64 << 20
VIRTIO_MMIO_STRIDE = 0x1000  # one page per virtio-mmio window
# Device interrupts on IOAPIC pins 16 and up: no legacy ISA device can be there.
VIRTIO_FIRST_GSI = 16
# Linux's disks get ISA IRQs no PC device claims (COM1 is 4): the MP table
# (vmm/boot/mptable.py) describes only the ISA interrupts, each wired to the IOAPIC pin
# of its number, as KVM's default routing wires GSIs below 16.
LINUX_VIRTIO_IRQS = (5, 9, 10, 11)
MIN_MEMORY = 1 << 20
# --cpus: the Linux guest's NR_CPUS (guest/linux/pyvmm.config) and the tiny kernel's.
MAX_CPUS = 16
# pyvmm's own exit status when the VM failed rather than the guest program: chosen
# outside the range a program's exit_group status commonly uses, like Docker's 125.
VM_FAILED_STATUS = 125


class ConfigError(PyvmmError):
    pass


@typed_tuple
class MachineConfig:
    kernel: str
    memory: int = DEFAULT_MEMORY
    cmdline: str = ""
    program: str | None = None
    output: Callable[[bytes], None] = print
    disks: tuple[tuple[str, bool], ...] = ()  # (image path, read-only), as /dev/vda, ...
    # Serve virtqueue notifications on an I/O thread through ioeventfd, rather than in
    # the vCPU's exit loop. The exit loop measured faster here (docs/ARCHITECTURE.md).
    ioeventfd: bool = False
    initrd: str | None = None  # Linux only: the initial RAM disk
    # /dev/kvm is PVM: a Linux guest's command line gets the masks PVM needs.
    pvm: bool = False
    # Network cards (vmm/devices/virtio/net.py NetOption), after the disks: eth0, ...
    nets: tuple = ()
    cpus: int = 1  # vCPUs, each on a thread of its own (vmm/vm/vcpus.py)
    # The tiny kernel takes device interrupts through the in-kernel irqchip rather than
    # polling (creating the irqchip costs some 3 ms, so a plain boot has none).
    interrupts: bool = False
    # A saved VM to go on from, instead of booting ``kernel``: a snapshot's
    # (vmm.control.snapshot.SavedVm) or one arriving by migration (migration.IncomingVm),
    # each giving the memory, linux and irqchip, and ``restore_into`` at the build's end.
    restore: object | None = None


@typed_tuple
class RunResult:
    """How a run ended. ``report`` explains a failure: registers and the instruction."""

    status: int
    reason: str
    report: str = ""
    failed: bool = False


def check_cpus(cpus: int) -> int:
    if not 1 <= cpus <= MAX_CPUS:
        raise ConfigError(f"--cpus {cpus} is out of range (1 to {MAX_CPUS})")
    return cpus


def check_memory_size(size: int) -> int:
    if size % 4096:
        raise ConfigError(f"memory size {size} is not a multiple of 4 KiB")
    if not MIN_MEMORY <= size <= layout.MAX_MEMORY:
        raise ConfigError(
            f"memory size {size >> 20} MiB is out of range "
            f"({MIN_MEMORY >> 20} MiB to {layout.MAX_MEMORY >> 30} GiB)"
        )
    return size


class Machine:
    """One VM: build it from a config, ``run()`` it once, ``close()`` it (or use ``with``)."""

    def __init__(self, config: MachineConfig, kvm: Kvm | None = None):
        check_memory_size(config.memory)
        check_cpus(config.cpus)
        self.config = config
        # Hooks around each KVM_RUN, for --trace and --stats; empty in a plain run.
        self.before_run: list[Callable[[object], None]] = []
        self.after_run: list[Callable[[object, object], None]] = []
        # Called when a signal ended KVM_RUN (vmm/kvm/kick.py): the halt watch, --profile.
        # Apart from after_run, so that they cost the other exits nothing.
        self.on_interrupt: list[Callable[[object], None]] = []
        # Called as the VMM raises an interrupt line: (mechanism, GSI), for --trace.
        self.on_irq: list[Callable[[str, int], None]] = []
        self._closers: list[Callable[[], None]] = []
        self.threads = VcpuThreads()
        try:
            self._build(kvm)
        except BaseException:
            self.close()
            raise

    def _build(self, kvm: Kvm | None) -> None:
        self.kvm = kvm or Kvm()
        if kvm is None:
            self._closers.append(self.kvm.close)
        self.vm = self.kvm.create_vm()
        self._closers.append(self.vm.close)
        saved = self.config.restore
        if saved is None:
            self.memory = GuestMemory(layout.ram_regions(self.config.memory))
        else:
            self.memory = saved.take_memory()
        self._closers.append(self.memory.close)
        for region in self.memory.regions:
            self.vm.set_memory(region.gpa, region.size, region.host_address)
        if saved is None:
            self.kernel = loader.open_kernel(self.config.kernel, self.memory)
        self.linux = saved.linux if saved else self.kernel.linux
        config = self.config
        irqchip = (
            saved.irqchip
            if saved
            else bool(
                config.disks or config.nets or self.linux or config.cpus > 1 or config.interrupts
            )
        )
        if irqchip:
            # Device interrupts need the in-kernel IOAPIC, and a second CPU the local
            # APICs' INIT and SIPI; they must exist before the vCPUs. Linux also needs its
            # PIC and PIT (the timer it calibrates against).
            self.vm.create_irqchip()

        concurrent = self.config.cpus > 1
        self.io_bus = Bus("port I/O", concurrent)
        self.mmio_bus = Bus("MMIO", concurrent)
        # With the in-kernel irqchip, the UART's interrupt is a real level-triggered line
        # (IRQ 4); without one, a polling driver like the tiny kernel's needs none.
        self.serial = Serial(self.config.output, self._uart_irq if self.vm.has_irqchip else None)
        self.io_bus.insert(self.serial, COM1_BASE, UART_NR_PORTS)
        self.io_bus.insert(ExitPort(), EXIT_PORT, EXIT_PORT_SIZE)
        self.io_bus.insert(I8042(), I8042_DATA_PORT, 5)
        disks = [self._attach_disk(i, *disk) for i, disk in enumerate(self.config.disks)]
        self.disks = [transport for _, transport in disks]  # for --stats
        nets = [self._attach_net(len(disks) + i, n) for i, n in enumerate(self.config.nets)]
        self.nets = [transport for _, transport in nets]
        if (self.config.ioeventfd and disks) or nets:
            self._serve_queues_on_io_thread(disks, nets)
        slots = tuple(slot for slot, _ in disks + nets)

        # vCPU i has local APIC id i; with the irqchip, KVM holds all but vCPU 0 (the boot
        # CPU) until their local APIC gets INIT and SIPI.
        self.vcpus = []
        for index in range(self.config.cpus):
            vcpu = self.vm.create_vcpu(index)
            self._closers.append(vcpu.close)
            self.vcpus.append(vcpu)
        self.vcpu = self.vcpus[0]
        self.cmdline = self.config.cmdline
        if saved is not None:
            saved.restore_into(self)
            return
        for index, vcpu in enumerate(self.vcpus):
            vcpu.set_cpuid(cpuid.for_vcpu(self.kvm.supported_cpuid(), index, self.config.pvm))
        # The command line the guest gets: Linux's is completed with the disks and masks.
        if self.linux:
            self.cmdline = linux.command_line(self.cmdline, slots, self.config.pvm)
        request = BootRequest(
            self.config.kernel, self.cmdline, self.config.program, virtio=slots,
            initrd=self.config.initrd, cpus=self.config.cpus, interrupts=self.config.interrupts,
        )  # fmt: skip
        start = loader.load(self.memory, request, self.kernel)
        start_vcpu(self.vcpu, start, layout.PML4)

    def _uart_irq(self, level: bool) -> None:
        self.vm.set_irq_line(COM1_IRQ, int(level))
        if level:
            for hook in self.on_irq:
                hook("KVM_IRQ_LINE", COM1_IRQ)

    def _irqfd_raiser(self, eventfd: int, gsi: int) -> Callable[[], None]:
        def raise_irq() -> None:
            os.eventfd_write(eventfd, 1)
            for hook in self.on_irq:
                hook("irqfd", gsi)

        return raise_irq

    def _attach_disk(self, index: int, path: str, readonly: bool) -> tuple[VirtioSlot, object]:
        """A virtio-blk disk; see ``_attach_virtio``.

        The virtio modules are imported here, not at the top: a boot without disks does
        not pay for them (interpreter start-up is part of every measured boot).
        """
        from vmm.devices.virtio.blk import VirtioBlk

        disk = VirtioBlk(path, readonly)
        self._closers.append(disk.close)
        return self._attach_virtio(index, disk)

    def _attach_net(self, index: int, option) -> tuple[VirtioSlot, object]:
        """A virtio-net card on a TAP (vmm/hostnet/tap.py), which it closes (and so removes, if
        pyvmm made it) after the I/O thread has stopped reading it."""
        from vmm.devices.virtio.net import VirtioNet, default_mac
        from vmm.hostnet.tap import Tap

        tap = Tap.open(option.tap, option.bridge)
        self._closers.append(tap.close)
        vhost = None
        if option.vhost:
            from vmm.devices.virtio.vhost import VhostNet

            vhost = VhostNet(tap.fd, self.memory)
            self._closers.append(vhost.close)
        mac = option.mac or default_mac(tap.name)
        card = VirtioNet(tap.fd, mac, tap.set_offload, option.offload, vhost=vhost)
        return self._attach_virtio(index, card)

    def _attach_virtio(self, index: int, device) -> tuple[VirtioSlot, object]:
        """A virtio device in its own MMIO window, its interrupt on an irqfd; returns
        where it is (for the boot-info block or Linux's command line) and its transport."""
        from vmm.devices.virtio.mmio import VIRTIO_MMIO_WINDOW_SIZE, VirtioMmio

        base = layout.MMIO_BASE + index * VIRTIO_MMIO_STRIDE
        gsi = LINUX_VIRTIO_IRQS[index] if self.linux else VIRTIO_FIRST_GSI + index
        irq = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._closers.append(lambda: os.close(irq))
        self.vm.register_irqfd(irq, gsi)
        transport = VirtioMmio(device, self.memory, self._irqfd_raiser(irq, gsi))
        self.mmio_bus.insert(transport, base, VIRTIO_MMIO_WINDOW_SIZE)
        return VirtioSlot(base, VIRTIO_MMIO_WINDOW_SIZE, gsi), transport

    def _serve_queues_on_io_thread(self, disks: list, nets: list) -> None:
        """An I/O thread reads the network cards' TAPs (edge-triggered: receiving is
        driven by the host); with --ioeventfd, QueueNotify writes signal an ioeventfd it
        serves instead of exiting to the vCPU's loop. A card's one notify eventfd serves
        both its queues (KVM would need a datamatch per queue to tell them apart).

        Its closer comes after the devices', so it runs first: the thread stops before
        the devices it serves are closed.
        """
        from vmm.devices.virtio.mmio import VIRTIO_MMIO_QUEUE_NOTIFY
        from vmm.devices.virtio.net import RECEIVEQ, TRANSMITQ
        from vmm.vm.iothread import IoThread

        io_thread = IoThread()
        self._closers.append(io_thread.stop)
        handlers = [(slot, lambda t=transport: t.notify(0)) for slot, transport in disks]
        for slot, transport in nets:
            vhost = transport.device.vhost
            if vhost is not None:
                # The kernel serves the queues: each queue's notify (told apart by its
                # index, KVM's datamatch) signals vhost's kick, and vhost's call comes
                # to this thread, which raises the interrupt (vmm/devices/virtio/vhost.py).
                for queue, kick in enumerate(vhost.kick_fds):
                    address = slot.base + VIRTIO_MMIO_QUEUE_NOTIFY
                    self.vm.register_ioeventfd(kick, address, 4, datamatch=queue)
                call = io_thread.watch(transport.backend_interrupt)
                vhost.call_fds = [call] * len(vhost.kick_fds)
                continue
            io_thread.watch_readable(
                transport.device.tap_fd, lambda t=transport: t.notify(RECEIVEQ)
            )
            handlers.append((slot, lambda t=transport: (t.notify(TRANSMITQ), t.notify(RECEIVEQ))))
        if self.config.ioeventfd:
            for slot, handler in handlers:
                notify = io_thread.watch(handler)
                self.vm.register_ioeventfd(notify, slot.base + VIRTIO_MMIO_QUEUE_NOTIFY, 4)
        io_thread.start()

    # --- running ----------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the guest until it stops; Ctrl-C stops it too (status 130).

        The boot CPU runs on the calling thread: starting a thread for it would cost a
        quarter of a millisecond of the time to the guest's first byte, and a Ctrl-C
        then interrupts KVM_RUN by itself (it returns EINTR and Python raises
        KeyboardInterrupt). The other vCPUs get a thread each (vmm/vm/vcpus.py).
        """
        kicker = self._watch_for_halt() if self.linux else None
        try:
            if len(self.vcpus) == 1:
                with self.threads.running(self.vcpu):
                    return self.run_vcpu(self.vcpu)
            group = VcpuGroup(self.vcpus, self.run_vcpu, self.threads)
            self.on_interrupt.insert(0, group.check)
            return group.run()
        except KeyboardInterrupt:
            return RunResult(INTERRUPTED_STATUS, "interrupted", failed=True)
        finally:
            if kicker:
                kicker.stop()

    def _watch_for_halt(self):
        """Linux powers off by halting with interrupts off, which never exits to the
        VMM: look every so often (vmm/vm/halt.py). Returns what to stop after the run."""
        from vmm.kvm.kick import VcpuKicker
        from vmm.vm.halt import HALT_CHECK_INTERVAL, HaltWatch

        self.on_interrupt.append(HaltWatch(self.memory, len(self.vcpus)).check)
        kicker = VcpuKicker(HALT_CHECK_INTERVAL)
        kicker.start(self.threads.kick)
        return kicker

    def run_vcpu(self, vcpu) -> RunResult:
        """The exit loop: enter the guest, decode why it left, dispatch, repeat."""
        io_bus, mmio_bus = self.io_bus, self.mmio_bus
        run = self._observed(vcpu) if self.before_run or self.after_run else vcpu.run
        try:
            while True:
                exit = run()
                kind = type(exit)
                if kind is IoExit:
                    _port_io(io_bus, exit)
                elif kind is MmioExit:
                    if exit.is_write:
                        mmio_bus.write(exit.addr, exit.data)
                    else:
                        exit.data[:] = mmio_bus.read(exit.addr, len(exit.data))
                elif kind is InterruptedExit:
                    # a signal: a kick (vmm/kvm/kick.py), or Ctrl-C, for which Python raises
                    # KeyboardInterrupt right after
                    for hook in self.on_interrupt:
                        hook(vcpu)
                elif kind is DebugExit:
                    pass  # only with --gdb, whose stub (an after_run hook) has taken it
                else:
                    return self._failure(vcpu, exit)
        except GuestStop as stop:
            return RunResult(stop.status, stop.reason)

    def _observed(self, vcpu) -> Callable[[], object]:
        """``vcpu.run`` with the --trace/--stats hooks around it. A plain run does not
        call this, so the hooks cost its exit loop nothing."""
        before, after = self.before_run, self.after_run

        def run():
            for hook in before:
                hook(vcpu)
            exit = vcpu.run()
            for hook in after:
                hook(vcpu, exit)
            return exit

        return run

    def _failure(self, vcpu, exit) -> RunResult:
        from vmm.debug.trace import describe_vcpu

        if isinstance(exit, HltExit):
            reason = "guest halted (HLT with nothing left to wake it) without powering off"
        elif isinstance(exit, ShutdownExit):
            reason = "guest triple-faulted (KVM_EXIT_SHUTDOWN)"
        elif isinstance(exit, FailEntryExit):
            reason = f"KVM could not enter the guest (hardware reason {exit.hardware_reason:#x})"
        elif isinstance(exit, InternalErrorExit):
            data = " ".join(f"{d:#x}" for d in exit.data)
            reason = f"KVM internal error: {internal_error_name(exit.suberror)} [{data}]"
        else:
            reason = f"unexpected exit {exit!r}"
        return RunResult(
            VM_FAILED_STATUS, reason, report=describe_vcpu(vcpu, self.memory, exit), failed=True
        )

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _port_io(bus: Bus, exit: IoExit) -> None:
    port, size, data = exit.port, exit.size, exit.data
    if exit.count == 1:
        if exit.is_write:
            bus.write(port, data)
        else:
            data[:] = bus.read(port, size)
        return
    for i in range(0, size * exit.count, size):  # rep ins/outs: one access per item
        if exit.is_write:
            bus.write(port, data[i : i + size])
        else:
            data[i : i + size] = bus.read(port, size)
