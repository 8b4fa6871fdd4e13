"""Fixtures for the VM tests: the bundled guest, built once per session; and for any test,
a short directory for unix sockets."""

import fcntl
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from vmtest import GUEST, ROOT

# A suite started in the background by a shell without job control (``cmd &`` in a
# script, as a CI runner may) inherits SIGINT ignored, and an ignored signal stays
# ignored across execve: every pyvmm the tests start would ignore the Ctrl-C the tests
# send it (exit -9 at the timeout instead of 130). A handler is reset to the default in
# each child at its execve, so the tests' children take SIGINT as a terminal's would.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Modules whose tests all go to one pytest-xdist worker: the engines start once per module
# on each worker that runs a test of it (Podman, containerd and dockerd, and the image
# loaded into each), and the conformance suite's real runs take turns at a machine-wide
# lock, which would keep the other worker waiting. (xdist's own --dist loadgroup does not
# group under pytest 9.2: pytest-xdist issue 1386.)
ONE_WORKER = {"tests/container/test_engines.py", "tests/test_conformance.py"}
# A doc's commands run in order in one scratch folder per worker, each seeing what the
# ones before it made (tests/test_docs.py): one doc's commands, one worker.
DOC_COMMAND = "tests/test_docs.py::test_doc_command["


def pytest_xdist_make_scheduler(config, log):
    """xdist's --dist load, but handing out whole, to one worker, each module of
    ONE_WORKER and each doc's commands (the biggest units first, then test by test)."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(DOC_COMMAND):
                return nodeid.rpartition(":")[0]  # up to the doc's name
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER else nodeid

    return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The slow tests first (the Linux boots, the engines, the conformance suite): with
    one worker per CPU, a boot of minutes handed out last would keep one worker busy
    that long after the other has run out of tests. A stable sort: each module's tests
    stay together, in their order; a doc's commands (some slow) all go first, in the
    doc's order, each seeing what the earlier ones made."""
    items.sort(
        key=lambda item: (
            not item.nodeid.startswith(DOC_COMMAND) and item.get_closest_marker("slow") is None
        )
    )


def make_guest() -> None:
    """``make -C guest``, one at a time: pytest-xdist's workers each build it at their
    start, and two makes writing one file could leave it half-written for a third."""
    with open(GUEST / "Makefile") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["make", "-s", "-C", str(GUEST)], check=True)


@pytest.fixture(scope="session")
def guest_build() -> Path:
    """The bundled guest, built once per test session with the system's gcc."""
    make_guest()
    return GUEST / "build"


@pytest.fixture(scope="session")
def linux_build(pytestconfig):
    """The Linux guest (kernels in the cache outside the repository, the initramfs in
    guest/build): built once, minutes the first time on a machine, then found by hash.
    ``scripts/setup.sh --all`` builds it too, so that a test run normally finds it ready;
    if not, the build's progress is shown, not captured: the run is not hung."""
    from vmm.guests import linux as linux_guest

    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(message, file=sys.stderr, flush=True)

    build = linux_guest.build_kernel(say=say)
    return build, linux_guest.build_initramfs()


@pytest.fixture(scope="session")
def linux_smp_build():
    """The SMP variant of the Linux guest, for --cpus: built on first use (minutes)."""
    from vmm.guests import linux as linux_guest

    build = linux_guest.build_kernel(say=lambda m: None, smp=True)
    return build, linux_guest.build_initramfs()


@pytest.fixture(scope="session")
def images_root(tmp_path_factory):
    """A state root holding the busybox and workload images, for labs that run pyvmm
    containers (and pyvmm bench, which insists on the very workload binary)."""
    root = tmp_path_factory.mktemp("pyvmm-root")
    make_guest()
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "build_images.py", "--root", root,
         "--workload", ROOT / "guest" / "workload" / "workload"],
        check=True, capture_output=True,
    )  # fmt: skip
    return root


@pytest.fixture
def socket_dir():
    """A directory of the test's own on a short path, removed afterwards: a unix socket's
    path may not pass 107 bytes, and tmp_path under a long TMPDIR does."""
    path = Path(tempfile.mkdtemp(prefix="pyvmm-", dir="/tmp"))
    yield path
    shutil.rmtree(path)
