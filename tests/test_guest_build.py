"""The bundled guest's build: ``pyvmm boot`` rebuilds it only when a source changed."""

import os
import shutil
import sys

from vmm.guests import tiny as guest

OUTPUTS = (guest.KERNEL, guest.DEMO_PROGRAM, guest.RAWREAD, guest.REALMODE_LAB, guest.WORKLOAD)


def test_after_make_every_output_counts_as_up_to_date(guest_build):
    # If guest/Makefile and vmm/guests/tiny.py disagree about what an output depends on, every
    # boot would run make again (some 40 ms) without anything to build.
    assert all(guest._up_to_date(o) for o in OUTPUTS)


def test_a_touched_source_makes_its_output_stale_and_ensure_built_rebuilds_it(
    guest_build, tmp_path, monkeypatch
):
    # On a copy of guest/ with its build: the repository's own outputs are read by tests
    # running meanwhile (pytest-xdist's other worker), and a rebuild rewrites them.
    copy = tmp_path / "guest"
    shutil.copytree(guest.GUEST_DIR, copy)  # mtimes kept: up to date as the original
    demo, kernel = (
        str(copy / os.path.relpath(o, guest.GUEST_DIR)) for o in (guest.DEMO_PROGRAM, guest.KERNEL)
    )
    monkeypatch.setattr(guest, "GUEST_DIR", str(copy))
    monkeypatch.setitem(guest._SOURCES, demo, guest._SOURCES[guest.DEMO_PROGRAM])
    monkeypatch.setitem(guest._SOURCES, kernel, guest._SOURCES[guest.KERNEL])
    source = copy / "demo" / "hello.c"
    older = source.stat().st_mtime - 10  # as if hello.c were edited after the build
    os.utime(demo, (older, older))
    assert not guest._up_to_date(demo)
    assert guest._up_to_date(kernel)
    guest.ensure_built(demo)
    assert guest._up_to_date(demo)
    assert "subprocess" in sys.modules
