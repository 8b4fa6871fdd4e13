"""The workload binary run natively on the host: the floor of the VM/container comparison."""

from __future__ import annotations

import hashlib
import importlib.util
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD_DIR = ROOT / "guest" / "workload"

_spec = importlib.util.spec_from_file_location("mkimage", ROOT / "scripts" / "mkimage.py")
mkimage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mkimage)


@pytest.fixture(scope="session")
def workload() -> Path:
    subprocess.run(["make", "-s", "-C", str(WORKLOAD_DIR)], check=True)
    return WORKLOAD_DIR / "workload"


def run(workload: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(workload), *args], capture_output=True, timeout=60)


@pytest.mark.parametrize("size", [0, 1, 55, 64, 511, 512, 513, 3 * (1 << 20) + 17])
def test_workload_prints_sha256_and_writes_result_block(workload, tmp_path, size):
    image = tmp_path / "in.img"
    sha = mkimage.make_image(image, size, seed=size)
    data = image.read_bytes()[512 : 512 + size]
    assert hashlib.sha256(data).hexdigest() == sha

    result = run(workload, str(image))

    line = f"workload: bytes={size} sha256={sha}\n".encode()
    assert result.returncode == 0, result.stdout
    assert result.stdout == line
    offset = mkimage.result_offset(size)
    assert image.read_bytes()[offset : offset + 512] == line.ljust(512, b"\0")


def test_workload_leaves_data_and_header_untouched(workload, tmp_path):
    image = tmp_path / "in.img"
    mkimage.make_image(image, 4096, seed=7)
    before = image.read_bytes()

    assert run(workload, str(image)).returncode == 0

    after = image.read_bytes()
    assert len(after) == len(before)
    assert after[: mkimage.result_offset(4096)] == before[: mkimage.result_offset(4096)]


def test_workload_is_deterministic_across_runs(workload, tmp_path):
    image = tmp_path / "in.img"
    mkimage.make_image(image, 10000, seed=3)
    assert run(workload, str(image)).stdout == run(workload, str(image)).stdout


def test_bad_magic_exits_1(workload, tmp_path):
    image = tmp_path / "bad.img"
    image.write_bytes(b"NOTMAGIC" + bytes(1024))
    result = run(workload, str(image))
    assert result.returncode == 1
    assert b"PYVMMWL1" in result.stdout


def test_empty_file_has_no_magic_and_exits_1(workload, tmp_path):
    image = tmp_path / "empty.img"
    image.write_bytes(b"")
    assert run(workload, str(image)).returncode == 1


def test_missing_file_exits_2(workload, tmp_path):
    result = run(workload, str(tmp_path / "absent.img"))
    assert result.returncode == 2
    assert b"cannot open" in result.stdout


def test_missing_argument_exits_2_with_usage(workload):
    result = run(workload)
    assert result.returncode == 2
    assert b"usage" in result.stdout


def test_data_length_past_end_of_file_exits_2(workload, tmp_path):
    image = tmp_path / "short.img"
    image.write_bytes((b"PYVMMWL1" + struct.pack("<Q", 5000)).ljust(512, b"\0") + bytes(1000))
    result = run(workload, str(image))
    assert result.returncode == 2
    assert b"short read" in result.stdout


def test_absurd_data_length_exits_2(workload, tmp_path):
    image = tmp_path / "huge.img"
    image.write_bytes((b"PYVMMWL1" + struct.pack("<Q", 2**64 - 1)).ljust(1024, b"\0"))
    assert run(workload, str(image)).returncode == 2


def test_directory_cannot_be_opened_read_write_exits_2(workload, tmp_path):
    assert run(workload, str(tmp_path)).returncode == 2


def test_binary_is_static_without_dynamic_section(workload):
    description = subprocess.run(["file", str(workload)], capture_output=True, text=True).stdout
    assert "statically linked" in description
    headers = subprocess.run(["readelf", "-d", str(workload)], capture_output=True, text=True)
    assert "no dynamic section" in headers.stdout
    program = subprocess.run(["readelf", "-lW", str(workload)], capture_output=True, text=True)
    assert "INTERP" not in program.stdout


def test_image_size_is_whole_sectors_with_room_for_result(tmp_path):
    image = tmp_path / "in.img"
    mkimage.make_image(image, 513)
    assert image.stat().st_size == 512 + 1024 + 512


def test_mkimage_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert mkimage.make_image(a, 3000, seed=1) == mkimage.make_image(b, 3000, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert mkimage.make_image(c, 3000, seed=2) != mkimage.make_image(a, 3000, seed=1)


def test_mkimage_command_line_parses_size(tmp_path):
    image = tmp_path / "cli.img"
    assert mkimage.main([str(image), "--size", "2K", "--seed", "5"]) == 0
    assert image.stat().st_size == 512 + 2048 + 512
