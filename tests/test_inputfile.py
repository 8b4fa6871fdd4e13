"""Files a user names: opened once without blocking, checked for kind, read with a bound."""

import os
import socket

import pytest
from vmtest import immutable

from vmm.inputfile import InputFileError, NotWritableError, open_input, read_input


def test_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "k"
    data = os.urandom(3 << 20)  # more than one read chunk
    path.write_bytes(data)
    assert read_input(str(path), "kernel", len(data)) == data


def test_file_larger_than_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(8 << 30)  # sparse: 8 GiB that occupy no disk and are never read
    with pytest.raises(InputFileError) as info:
        read_input(str(path), "program", 64 << 20, "guest memory")
    assert str(info.value) == f"program {str(path)!r} is 8 GiB; at most 64 MiB (guest memory)"


def test_file_that_reports_no_size_is_still_bounded():
    # /proc files say they are empty and then read on: only the read can bound them.
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(InputFileError, match="is larger than 100 bytes"):
        read_input("/proc/self/maps", "kernel", 100)


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="is a FIFO, not a regular file"):
        read_input(str(fifo), "kernel", 1 << 20)
    with pytest.raises(InputFileError, match="is a FIFO"):
        open_input(str(fifo), "disk image", writable=True, block_device_ok=True)


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")]
)
def test_devices_and_directories_are_refused(path, kind):
    with pytest.raises(InputFileError, match=f"'{path}' is {kind}"):
        read_input(path, "program", 1 << 20)


def test_socket_is_refused(socket_dir):
    path = socket_dir / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(InputFileError, match="is a socket"):
            read_input(str(path), "kernel", 1 << 20)


def test_directory_opened_for_writing_says_what_it_is(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        open_input(str(tmp_path), "disk image", writable=True)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_input(str(tmp_path / "none"), "kernel", 1 << 20)


def test_descriptor_is_blocking_and_close_on_exec(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = open_input(str(path), "disk image", writable=True)
    try:
        assert os.get_blocking(fd) and not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_file_that_cannot_be_written_is_refused_for_writing(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    with immutable(path):
        with pytest.raises(NotWritableError, match="is not writable"):
            open_input(str(path), "disk image", writable=True)
        os.close(open_input(str(path), "disk image"))
