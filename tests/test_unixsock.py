"""The control and migration sockets' path (vmm/control/unixsock.py): it appears only once
the socket listens, mode 0600, and no temporary name is left beside it."""

import os
import socket
import stat

import pytest

from vmm.control.unixsock import SUN_PATH_MAX, SocketPathError, listen_unix


def connects(path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except ConnectionRefusedError:
            return False
    return True


def test_the_path_appears_listening_mode_0600_and_alone(tmp_path):
    path = tmp_path / "api.sock"
    sock = listen_unix(str(path), "--api-sock")
    try:
        assert os.listdir(tmp_path) == ["api.sock"]  # the temporary name is gone
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert connects(path)
        with pytest.raises(SocketPathError, match="another process is serving on it"):
            listen_unix(str(path), "--api-sock")
    finally:
        sock.close()
        os.unlink(path)


def test_a_path_with_no_room_for_a_temporary_name_is_bound_where_it_is(tmp_path):
    room = SUN_PATH_MAX - 1 - len(str(tmp_path)) - len("/d/s")
    folder = tmp_path / ("d" * room)
    folder.mkdir()
    path = folder / "s"
    assert len(str(path)) < SUN_PATH_MAX  # fits; a ".PID-XXXXXX" beside it would not
    sock = listen_unix(str(path), "--api-sock")
    try:
        assert os.listdir(folder) == ["s"] and connects(path)
    finally:
        sock.close()
        os.unlink(path)


def test_a_leftover_socket_is_replaced_and_a_file_is_refused(tmp_path):
    path = tmp_path / "api.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # bound, never listening, its process gone: a leftover
    sock = listen_unix(str(path), "--api-sock")
    sock.close()
    os.unlink(path)
    path.write_text("not a socket")
    with pytest.raises(SocketPathError, match="exists already and is not a socket"):
        listen_unix(str(path), "--api-sock")
    assert path.read_text() == "not a socket"
