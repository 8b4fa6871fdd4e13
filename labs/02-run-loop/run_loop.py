"""Lab 2: a KVM run loop of your own, on pyvmm's thin bindings (vmm.kvm).

Usage: python run_loop.py GUEST.bin

GUEST.bin is a flat 16-bit program that expects to be loaded at guest-physical 0x7c00
and started in real mode with CS:IP = 0:0x7c00, the way a BIOS starts a boot sector.
It writes one line to the UART's data port 0x3f8 (an OUT exit per byte) and halts.
"""

import ctypes
import mmap
import sys

from vmm.kvm import HltExit, IoExit, Kvm, MmioExit, ShutdownExit

MEMORY_SIZE = 1 << 20  # 1 MiB of guest RAM at guest-physical 0
LOAD_ADDRESS = 0x7C00  # where a BIOS puts a boot sector
UART_DATA = 0x3F8  # COM1's transmit register


def main(path: str) -> int:
    code = open(path, "rb").read()
    kvm = Kvm()  # opens /dev/kvm and checks the API version
    vm = kvm.create_vm()  # KVM_CREATE_VM

    # >>> 2: give the guest memory: an anonymous mmap, the guest's code copied to LOAD_ADDRESS,
    # ... and the mapping handed to KVM as a memory slot (vm.set_memory) at guest-physical 0
    memory = mmap.mmap(-1, MEMORY_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    memory[LOAD_ADDRESS : LOAD_ADDRESS + len(code)] = code
    host_address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    vm.set_memory(0, MEMORY_SIZE, host_address)  # KVM_SET_USER_MEMORY_REGION
    # <<<

    vcpu = vm.create_vcpu(0)  # KVM_CREATE_VCPU; maps its struct kvm_run

    # >>> 2: set the registers: every segment's base and selector 0 (vcpu.get_sregs/set_sregs),
    # ... then RIP = LOAD_ADDRESS and RFLAGS = 2, bit 1 always set (vcpu.get_regs/set_regs)
    sregs = vcpu.get_sregs()
    for segment in (sregs.cs, sregs.ds, sregs.es, sregs.ss):
        segment.base = 0
        segment.selector = 0
    vcpu.set_sregs(sregs)
    regs = vcpu.get_regs()
    regs.rip = LOAD_ADDRESS
    regs.rflags = 2
    vcpu.set_regs(regs)
    # <<<

    while True:
        # >>> 2: run the vCPU (vcpu.run() is KVM_RUN, it returns the exit decoded); print
        # ... each byte the guest OUTs to UART_DATA, and return 0 on HLT
        exit = vcpu.run()
        if isinstance(exit, IoExit) and exit.is_write and exit.port == UART_DATA:
            sys.stdout.write(bytes(exit.data).decode("latin-1"))
        elif isinstance(exit, HltExit):
            sys.stdout.flush()
            return 0
        # <<<
        # >>> 7: an MmioExit is a load or store where the guest has no RAM: print
        # ... "MMIO read ADDR size N" (or write) to stderr, answer a read with all ones
        # ... (exit.data[:] = ...) as a PC's bus does, and go on
        #|
        elif isinstance(exit, MmioExit):
            kind = "write" if exit.is_write else "read"
            print(f"MMIO {kind} {exit.addr:#x} size {len(exit.data)}", file=sys.stderr)
            if not exit.is_write:
                exit.data[:] = b"\xff" * len(exit.data)
        # <<<
        # >>> 7: a ShutdownExit is a triple fault: print "triple fault at ADDR" with CS's
        # ... base + RIP, the mode (CR0.PE, CS.db), and the instruction's bytes there, read
        # ... from guest memory, to stderr; then return 1
        #|
        elif isinstance(exit, ShutdownExit):
            regs, sregs = vcpu.get_regs(), vcpu.get_sregs()
            where = sregs.cs.base + regs.rip
            mode = "real" if not sregs.cr0 & 1 else "32-bit" if sregs.cs.db else "16-bit"
            code = bytes(memory[where : where + 8]).hex(" ")
            print(f"triple fault at {where:#x} ({mode} mode), code: {code}", file=sys.stderr)
            return 1
        # <<<
        # >>> 2: any other exit: say which (print(exit) shows it) and return 1
        #|
        else:
            print(f"unexpected exit: {exit!r}", file=sys.stderr)
            return 1
        # <<<


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
