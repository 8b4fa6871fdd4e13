"""Nothing is lost, and nothing is left, when pyvmm is killed: ``kill -9`` at random
points of ``image import``, ``container run``, ``container rm`` and ``volume rm``,
then every record loads or is listed as broken, and removing everything leaves no
file, mount, cgroup or process behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from containertest import PYVMM, Pyvmm, host_state, pyvmm_processes
from test_store_corruption import _leftovers, _mounts_under, _ok, _private_root

KILLS = 30
# How long each operation runs here, about, at first: the kill lands anywhere in it.
# An operation that finished before its kill shortens its span (a less loaded host).
SPAN = {"import": 0.8, "run": 0.6, "rm": 0.5, "volume rm": 0.5}


def _tree(top: Path, files: int) -> Path:
    """A small rootfs to import, and to fill volumes with: removal takes a while."""
    for i in range(files):
        d = top / f"d{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}").write_text(f"{i}\n")
    return top


def _start(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYVMM_ROOT": str(root)}
    return subprocess.Popen(
        [*PYVMM, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_kill_9_at_random_points_leaves_a_consistent_store(pyvmm, tmp_path):
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    root = _private_root(pyvmm.root, tmp_path)
    store = Pyvmm(root)
    rootfs = _tree(tmp_path / "rootfs", 600)
    killed, span = 0, dict(SPAN)
    try:
        for i in range(KILLS):
            op = ("import", "run", "rm", "volume rm")[i % 4]
            if op == "import":
                args = ["image", "import", str(rootfs), f"crash{i}"]
            elif op == "run":
                args = ["container", "run", "--name", f"c{i}", "-v", f"v{i}:/data",
                        "busybox", "sh", "-c", "echo x > /data/x"]  # fmt: skip
            elif op == "rm":
                _ok(store("container", "run", "--name", f"c{i}", "busybox", "true"))
                args = ["container", "rm", f"c{i}"]
            else:
                _ok(store("volume", "create", f"v{i}"))
                _tree(root / "volumes" / f"v{i}" / "_data", 600)
                args = ["volume", "rm", f"v{i}"]
            process = _start(root, *args)
            time.sleep(rng.uniform(0, span[op]))
            process.send_signal(signal.SIGKILL)
            if process.wait() == -signal.SIGKILL:
                killed += 1
            else:
                span[op] *= 0.5
        assert killed >= KILLS // 2, f"only {killed} of {KILLS} were killed mid-way"
        _check_consistent(store, root)
        print(f"seed {seed}: {killed} of {KILLS} killed mid-way")
    finally:
        ids = store("container", "ps", "-a", "-q").stdout.split()
        if ids:
            store("container", "rm", "-f", *ids)
    assert not _mounts_under(root), f"mounts left behind (seed {seed})"
    assert not any(host_state(root, root)[1]), f"cgroups left behind (seed {seed})"
    assert not pyvmm_processes(root), f"processes left behind (seed {seed})"


def _check_consistent(store: Pyvmm, root: Path) -> None:
    """Every record loads or is listed broken; rm -f of everything leaves no file."""
    _ok(store("image", "ls"))
    _ok(store("volume", "ls"))
    ids = _ok(store("container", "ps", "-a", "-q")).split()
    assert len(ids) == len(os.listdir(root / "containers"))
    for cid in ids:
        _ok(store("container", "inspect", cid))
    if ids:
        _ok(store("container", "rm", "-f", *ids))
    for path in sorted((root / "images").glob("*/*.json")):
        _ok(store("image", "rm", f"{path.parent.name}:{path.stem}"))
    for name in sorted(os.listdir(root / "volumes")):
        _ok(store("volume", "rm", name))
    assert _leftovers(root) == []
    assert not os.listdir(root / "layers" / "sha256")
