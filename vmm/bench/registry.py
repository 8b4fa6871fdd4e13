"""``pyvmm bench pull``: ``pyvmm image pull`` beside ``podman pull``, from one registry.

A private ``docker-registry`` (Debian's build of the distribution project's registry)
on a loopback port holds two images pushed by pyvmm: the small ``workload`` image
(busybox and the workload, two layers) and a larger one (a copy of this Python's
standard library, thousands of files in one layer). Both clients pull each image into
a fresh, private store each run, through a loopback relay that counts the bytes the
registry sends: the time is the whole command as a user runs it, the bytes what went
over the wire.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vmm.bench.containers import private_podman
from vmm.container.linux.fdtree import remove_tree

REPO = Path(__file__).resolve().parents[2]
PYVMM = [str(Path(sys.executable).parent / "pyvmm")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRegistry:
    """A ``docker-registry`` process of our own: storage, config and loopback port."""

    def __init__(self, top: Path, auth: dict | None = None):
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (scripts/setup.sh --all)")
        top.mkdir(parents=True, exist_ok=True)
        self.storage = top / "storage"
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
            **({"auth": auth} if auth else {}),
        }  # fmt: skip
        (top / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = open(top / "registry.log", "wb")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(
            [binary, "serve", str(top / "config.yml")], stdout=self.log, stderr=self.log
        )
        try:
            wait_for_port(self.port, self.process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def wait_for_port(port: int, process: subprocess.Popen | None = None) -> None:
    """Until something accepts connections on loopback ``port`` (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Relay:
    """A loopback TCP relay to ``port`` that counts the bytes coming back from it."""

    def __init__(self, port: int):
        self.upstream = port
        self.received = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
                threading.Thread(
                    target=self._pump, args=(client, server, False), daemon=True
                ).start()
                threading.Thread(
                    target=self._pump, args=(server, client, True), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if count:
                    with self.lock:
                        self.received += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def _timed(argv: list[str], relay: Relay, env: dict | None = None) -> tuple[float, int]:
    before = relay.received
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}...: {r.stderr.strip()[-300:]}")
    time.sleep(0.05)  # the relay's last bytes
    return elapsed, relay.received - before


@contextlib.contextmanager
def _images(tmp: Path) -> Iterator[Path]:
    """A store holding the images to push: workload, and stdlib."""
    store = tmp / "source"
    subprocess.run(
        [sys.executable, REPO / "scripts" / "build_images.py", "--root", store,
         "--workload", "/bin/busybox"], check=True, capture_output=True,
    )  # fmt: skip
    stdlib = tmp / "stdlib"
    shutil.copytree(sysconfig.get_paths()["stdlib"], stdlib / "usr/lib/python3", symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "dist-packages"))  # fmt: skip
    subprocess.run([*PYVMM, "--root", store, "image", "import", stdlib, "stdlib"], check=True,
                   capture_output=True)  # fmt: skip
    remove_tree(stdlib)
    try:
        yield store
    finally:
        remove_tree(store)


def measure(runs: int = 3) -> dict:
    result: dict = {"runs": runs, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="pyvmm-bench-pull-", dir="/var/tmp") as tmp:
        tmp = Path(tmp)
        registry = LocalRegistry(tmp / "registry")
        relay = Relay(registry.port)
        try:
            with _images(tmp) as store:
                for image in ("workload", "stdlib"):
                    subprocess.run(
                        [*PYVMM, "--root", store, "image", "push", image,
                         f"{registry.host}/bench/{image}"], check=True, capture_output=True,
                    )  # fmt: skip
            for image in ("workload", "stdlib"):
                ref = f"{relay.host}/bench/{image}"
                row: dict = {"pyvmm": [], "podman": []}
                for i in range(runs):
                    root = tmp / f"pyvmm-{i}"
                    row["pyvmm"].append(
                        _timed([*PYVMM, "--root", str(root), "image", "pull", ref], relay)
                    )
                    remove_tree(root)
                    with private_podman(tmp / f"podman-{i}") as podman:
                        row["podman"].append(
                            _timed(
                                podman.argv + ["pull", "--tls-verify=false", ref], relay, podman.env
                            )  # fmt: skip
                        )
                    with contextlib.suppress(FileNotFoundError):
                        remove_tree(tmp / f"podman-{i}")
                result["rows"][image] = {
                    tool: {"s": statistics.median(t for t, _ in v), "bytes": v[0][1]}
                    for tool, v in row.items()
                }
        finally:
            relay.close()
            registry.stop()
    return result


def table(result: dict) -> str:
    lines = [f"Pull from a loopback docker-registry (medians of {result['runs']} runs, a fresh "
             "store each)", "",
             "| image | pyvmm image pull | podman pull | x podman | bytes pyvmm | bytes podman |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for image, r in result["rows"].items():
        p, q = r["pyvmm"], r["podman"]
        lines.append(
            f"| {image} | {p['s'] * 1000:.0f} ms | {q['s'] * 1000:.0f} ms | "
            f"{p['s'] / q['s']:.2f} | {p['bytes']:,} | {q['bytes']:,} |"
        )
    return "\n".join(lines)
