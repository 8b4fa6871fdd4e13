"""The host side of the serial port: what reaches the terminal is what the guest wrote,
once, also when Ctrl-C lands in the middle of writing it."""

import os
import signal
import sys

from vmtest import needs_kvm

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


def test_a_reader_gone_drops_the_output_and_the_guest_runs_on():
    """``pyvmm boot | head -1``: once the pipe's reader has gone, output is dropped
    (as QEMU's and Firecracker's serial ports do) rather than raising in the vCPU's exit
    loop, where it would end the run and skip its clean-up."""
    r, w = os.pipe()
    os.close(r)
    console = Console(w)
    try:
        console.output(b"line 1\n")
        console.output(b"line 2\n")
        console.close()
    finally:
        os.close(w)
    assert console.fd is None


def _closed_stdout(argv: list[str]) -> tuple[int, bytes]:
    import subprocess

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=60), err


@needs_kvm
def test_boot_into_a_closed_pipe_ends_with_the_guests_status_and_no_traceback():
    status, err = _closed_stdout([sys.executable, "-m", "vmm", "boot", "--cmdline", "-- 7"])
    assert (status, err) == (7, b"")


def test_help_into_a_closed_pipe_ends_as_ls_does():
    """Killed by SIGPIPE, no message: what ``ls | head -0`` gives the shell."""
    status, err = _closed_stdout([sys.executable, "-m", "vmm", "boot", "--help"])
    assert (status, err) == (-signal.SIGPIPE, b"")
