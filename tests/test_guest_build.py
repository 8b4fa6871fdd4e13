"""The bundled guest's build: ``pyvmm boot`` rebuilds it only when a source changed."""

import os
import sys

from vmm import guest

OUTPUTS = (guest.KERNEL, guest.DEMO_PROGRAM, guest.RAWREAD, guest.REALMODE_LAB, guest.WORKLOAD)


def test_after_make_every_output_counts_as_up_to_date(guest_build):
    # If guest/Makefile and vmm/guest.py disagree about what an output depends on, every
    # boot would run make again (some 40 ms) without anything to build.
    assert all(guest._up_to_date(o) for o in OUTPUTS)


def test_a_touched_source_makes_its_output_stale_and_ensure_built_rebuilds_it(guest_build):
    source = os.path.join(guest.GUEST_DIR, "demo", "hello.c")
    older = os.stat(source).st_mtime - 10  # as if hello.c were edited after the build
    os.utime(guest.DEMO_PROGRAM, (older, older))
    assert not guest._up_to_date(guest.DEMO_PROGRAM)
    assert guest._up_to_date(guest.KERNEL)
    guest.ensure_built(guest.DEMO_PROGRAM)
    assert guest._up_to_date(guest.DEMO_PROGRAM)
    assert "subprocess" in sys.modules
