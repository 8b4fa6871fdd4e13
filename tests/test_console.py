"""The host side of the serial port: what reaches the terminal is what the guest wrote,
once, also when Ctrl-C lands in the middle of writing it."""

import os
import sys

from vmm.vm.console import Console


def test_a_line_interrupted_right_after_its_write_is_not_written_again():
    """Ctrl-C raises KeyboardInterrupt at the first check after a call returns: here,
    right after ``os.write`` (a profile hook raises it there, every time). The close that
    follows must not repeat the line: a restored guest's counter once printed ``12, 12``."""
    r, w = os.pipe()
    console = Console(w)

    def interrupt_after_write(frame, event, arg):
        if event == "c_return" and arg is os.write:
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(interrupt_after_write)
    try:
        console.output(b"count 12\n")
    except KeyboardInterrupt:
        pass
    finally:
        sys.setprofile(None)
        console.close()
        os.close(w)
    with os.fdopen(r, "rb") as out:
        assert out.read() == b"count 12\n"


def test_output_is_written_a_line_at_a_time_and_the_rest_on_close():
    r, w = os.pipe()
    console = Console(w)
    console.output(b"count ")
    os.set_blocking(r, False)
    assert _read(r) == b""
    console.output(b"1\ncount")
    assert _read(r) == b"count 1\ncount"
    console.output(b" 2")
    console.close()
    assert _read(r) == b" 2"
    os.close(w)
    os.close(r)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
