"""How a guest ends its run: the exit port and the i8042 reset line.

A device cannot stop the machine itself (it knows nothing of vCPUs), so it raises
``GuestStop`` (``vmm/guest_stop.py``); the machine's exit loop catches it and ends the
run with its status.
"""

from __future__ import annotations

from vmm.guest_stop import GuestStop

# pyvmm's exit port, at QEMU's isa-debug-exit address: a guest writes its exit status
# (one to four bytes, little-endian) and the VMM exits with it. QEMU's device reports
# (status << 1) | 1 instead; pyvmm passes the status through unchanged.
EXIT_PORT = 0x501
EXIT_PORT_SIZE = 4

# The keyboard controller's command port; command 0xFE pulses the CPU reset line, the
# oldest way to reboot a PC (and Linux's "reboot=k").
I8042_COMMAND_PORT = 0x64
I8042_DATA_PORT = 0x60
I8042_CMD_RESET = 0xFE
I8042_STATUS_IDLE = 0x00  # output buffer empty, input buffer empty


class ExitPort:
    def read(self, offset: int, size: int) -> bytes:
        return b"\0" * size

    def write(self, offset: int, data: bytes) -> None:
        status = int.from_bytes(data, "little") & 0xFF
        raise GuestStop(status, f"guest powered off with status {status}")


class I8042:
    """Just enough of the PC keyboard controller for a guest to reset the machine."""

    def read(self, offset: int, size: int) -> bytes:
        return bytes((I8042_STATUS_IDLE,)) * size

    def write(self, offset: int, data: bytes) -> None:
        if offset == I8042_COMMAND_PORT - I8042_DATA_PORT and data[0] == I8042_CMD_RESET:
            raise GuestStop(0, "guest reset the machine through the i8042")
