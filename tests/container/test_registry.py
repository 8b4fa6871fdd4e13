"""Pull and push against a real registry: Debian's ``docker-registry`` (the distribution
project's registry v2), started here on a loopback port with a private storage root
and configuration, and stopped afterwards.

Around it, small loopback servers stand for what a registry's world holds: a proxy
that cuts a blob download off half-way (the pull must resume it with ``Range``), a
token server (the Bearer flow: it signs JWTs with a key whose certificate the
registry trusts), and a hostile registry (redirects where none may go).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from containertest import entry, image_config, oci_layout, one_line_error, tar_bytes

from vmm.bench.registry import LocalRegistry

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None,
    reason="needs Debian's docker-registry (scripts/setup.sh --all)",
)
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class Registry(LocalRegistry):
    """The bench's private docker-registry, and what the tests do to it by hand."""

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"

    def put(self, path: str, body: bytes, media_type: str, headers: dict | None = None) -> str:
        """PUT a document directly (no auth): what a test builds by hand."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("PUT", path, body, {"Content-Type": media_type, **(headers or {})})
        resp = conn.getresponse()
        answer = resp.read()
        conn.close()
        assert resp.status == 201, answer
        return resp.getheader("Docker-Content-Digest")

    def upload(self, repo: str, data: bytes) -> str:
        """A blob uploaded by hand (monolithic, no auth); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        resp = conn.getresponse()
        resp.read()
        location = urllib.parse.urlsplit(resp.getheader("Location"))
        query = f"{location.query}&digest={digest}"
        conn.request("PUT", f"{location.path}?{query}", data,
                     {"Content-Type": "application/octet-stream"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 201
        return digest

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path, headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        assert resp.status == 200, data
        return data


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Loopback:
    """A little HTTP server on a loopback port, in a thread, for the test's duration."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]):
        self.server = _Server(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path)
    yield reg
    reg.stop()


def _stored(root: Path) -> set[str]:
    """What the state root holds: top level, layers, images (as test_image_verify)."""
    return {
        str(p.relative_to(root))
        for pattern in ("*", "layers/sha256/*", "layers/sha256/*/*", "images/*", "images/*/*")
        for p in root.glob(pattern)
    }


def _fresh_image(pyvmm, tmp: Path, name: str, size: int = 300_000) -> dict:
    """An image no other test has: a directory of random files, one of them large
    enough that a download of it can be cut off half-way."""
    src = tmp / f"{name}-rootfs"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "big").write_bytes(os.urandom(size))
    (src / "hello").write_text(f"hello from {name}\n")
    os.symlink("hello", src / "link")
    pyvmm.ok("image", "import", src, name)
    return json.loads(pyvmm.ok("image", "inspect", name))


def _digest(out: str) -> str:
    line = next(x for x in out.splitlines() if x.startswith("Digest: "))
    return line.removeprefix("Digest: ")


def _manifest(registry: Registry, repo: str, digest: str) -> dict:
    return json.loads(registry.get(f"/v2/{repo}/manifests/{digest}"))


def test_push_then_pull_gives_the_same_image(pyvmm, registry, tmp_path):
    image = _fresh_image(pyvmm, tmp_path, "roundtrip")
    pushed = _digest(pyvmm.ok("image", "push", "roundtrip", f"{registry.host}/t/roundtrip:v1"))
    # Pushing again uploads nothing and writes the very same manifest.
    assert (
        _digest(pyvmm.ok("image", "push", "roundtrip", f"{registry.host}/t/roundtrip:v1")) == pushed
    )
    pyvmm.ok("image", "rm", "roundtrip")  # its layer goes with it: the pull must fetch it
    out = pyvmm.ok("image", "pull", f"{registry.host}/t/roundtrip:v1", "back")
    assert _digest(out) == pushed
    back = json.loads(pyvmm.ok("image", "inspect", "back"))
    assert back["layers"] == image["layers"] and back["id"] == image["id"]
    layer = pyvmm.root / "layers/sha256" / image["layers"][0]["digest"].removeprefix("sha256:")
    assert (layer / "diff/hello").read_text() == "hello from roundtrip\n"
    assert os.readlink(layer / "diff/link") == "hello"
    # By digest, the same image again; nothing to fetch, one more name for it.
    out = pyvmm.ok("image", "pull", f"{registry.host}/t/roundtrip@{pushed}")
    assert f"roundtrip:{pushed.removeprefix('sha256:')} {image['id'][:12]}" in out
    pyvmm.ok("image", "rm", "back", f"roundtrip:{pushed.removeprefix('sha256:')}")


def test_whiteouts_travel_in_the_oci_spelling_and_come_back(pyvmm, registry, tmp_path):
    """A layer stored in overlayfs's spelling (a 0/0 device, the opaque xattr) is pushed
    as ``.wh.NAME`` and ``.wh..wh..opq``, and pulled back as the same deletions."""
    D = tarfile.DIRTYPE
    lower = tar_bytes(
        [
            entry("keep", D),
            entry("gone", data=b"old"),
            entry("opaque", D),
            entry("opaque/old", data=b"old"),
            entry("salt", data=os.urandom(8)),
        ]
    )
    upper = tar_bytes([entry(".wh.gone"), entry("opaque", D), entry("opaque/.wh..wh..opq"),
                       entry("opaque/new", data=os.urandom(8))])  # fmt: skip
    oci_layout(tmp_path / "layout", [lower, upper], image_config([lower, upper]))
    pyvmm.ok("image", "import", tmp_path / "layout", "whiteouts")
    pushed = _digest(pyvmm.ok("image", "push", "whiteouts", f"{registry.host}/t/whiteouts"))
    pyvmm.ok("image", "rm", "whiteouts")
    top = _manifest(registry, "t/whiteouts", pushed)["layers"][1]["digest"]
    with tarfile.open(
        fileobj=io.BytesIO(gzip.decompress(registry.blob_file(top).read_bytes()))
    ) as t:
        names = [m.name for m in t.getmembers()]
    assert names == [".wh.gone", "opaque", "opaque/.wh..wh..opq", "opaque/new"]
    pyvmm.ok("image", "pull", f"{registry.host}/t/whiteouts", "back")
    layer = json.loads(pyvmm.ok("image", "inspect", "back"))["layers"][1]["digest"]
    diff = pyvmm.root / "layers/sha256" / layer.removeprefix("sha256:") / "diff"
    gone = os.lstat(diff / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(diff / "opaque", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(diff / "opaque")) == ["new"]
    pyvmm.ok("image", "rm", "back")


def test_push_mounts_a_layer_another_repository_has(pyvmm, registry, tmp_path):
    _fresh_image(pyvmm, tmp_path, "mounted")
    pyvmm.ok("image", "push", "mounted", f"{registry.host}/one/mounted")
    r = subprocess.run(
        ["script", "-qec", shlex.join([*map(str, pyvmm.command), "image", "push", "mounted",
                                     f"{registry.host}/two/mounted"]), "/dev/null"],
        capture_output=True, text=True, env={**os.environ, "PYVMM_ROOT": str(pyvmm.root)},
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Mounted from one/mounted" in r.stdout  # the progress lines, on a terminal
    # The registry links the blob into the second repository: no upload of it took place.
    links = registry.storage / "docker/registry/v2/repositories/two/mounted/_layers/sha256"
    assert len(list(links.iterdir())) == 2  # the layer (mounted) and the config
    pyvmm.ok("image", "rm", "mounted")


def test_index_picks_this_hosts_platform_and_docker_manifests_pull(pyvmm, registry, tmp_path):
    """An OCI index listing another platform first, and a Docker schema 2 manifest."""
    ours = _fresh_image(pyvmm, tmp_path, "amd")
    _fresh_image(pyvmm, tmp_path, "arm")
    amd = _digest(pyvmm.ok("image", "push", "amd", f"{registry.host}/multi/img:amd"))
    arm = _digest(pyvmm.ok("image", "push", "arm", f"{registry.host}/multi/img:arm"))
    pyvmm.ok("image", "rm", "amd", "arm")
    entries = []
    for digest, arch in ((arm, "arm64"), (amd, "amd64")):
        size = len(registry.get(f"/v2/multi/img/manifests/{digest}"))
        entries.append({"mediaType": OCI_MANIFEST,
                        "digest": digest, "size": size,
                        "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    registry.put("/v2/multi/img/manifests/latest", index.encode(), OCI_INDEX)
    pyvmm.ok("image", "pull", f"{registry.host}/multi/img", "fromindex")
    assert json.loads(pyvmm.ok("image", "inspect", "fromindex"))["id"] == ours["id"]

    oci = _manifest(registry, "multi/img", amd)
    docker = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
              "config": {**oci["config"], "mediaType":
                         "application/vnd.docker.container.image.v1+json"},
              "layers": [{**d, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
                         for d in oci["layers"]]}  # fmt: skip
    registry.put("/v2/multi/img/manifests/docker", json.dumps(docker).encode(), DOCKER_MANIFEST)
    pyvmm.ok("image", "pull", f"{registry.host}/multi/img:docker", "fromdocker")
    assert json.loads(pyvmm.ok("image", "inspect", "fromdocker"))["id"] == ours["id"]
    pyvmm.ok("image", "rm", "fromindex", "fromdocker")


def test_a_tampered_blob_is_refused_and_nothing_stays(pyvmm, registry, tmp_path):
    _fresh_image(pyvmm, tmp_path, "tampered")
    pushed = _digest(pyvmm.ok("image", "push", "tampered", f"{registry.host}/t/tampered"))
    pyvmm.ok("image", "rm", "tampered")
    layer = _manifest(registry, "t/tampered", pushed)["layers"][0]["digest"]
    blob = registry.blob_file(layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
    blob.write_bytes(bytes(data))
    before = _stored(pyvmm.root)
    r = pyvmm("image", "pull", f"{registry.host}/t/tampered")
    assert r.returncode == 2
    assert f"digest mismatch: expected {layer}" in one_line_error(r)
    assert _stored(pyvmm.root) == before


def test_a_config_whose_diff_id_lies_is_refused_and_nothing_stays(pyvmm, registry, tmp_path):
    """The blob is the one the manifest names, but not the tar the config says: the
    layer is unpacked, found out by its sha256, and taken back out."""
    _fresh_image(pyvmm, tmp_path, "lying")
    pushed = _digest(pyvmm.ok("image", "push", "lying", f"{registry.host}/t/lying"))
    pyvmm.ok("image", "rm", "lying")
    manifest = _manifest(registry, "t/lying", pushed)
    config = json.loads(registry.get(f"/v2/t/lying/blobs/{manifest['config']['digest']}"))
    config["rootfs"]["diff_ids"] = ["sha256:" + "ab" * 32]
    data = json.dumps(config).encode()
    manifest["config"].update(digest=registry.upload("t/lying", data), size=len(data))
    registry.put("/v2/t/lying/manifests/lie", json.dumps(manifest).encode(), OCI_MANIFEST)
    before = _stored(pyvmm.root)
    r = pyvmm("image", "pull", f"{registry.host}/t/lying:lie")
    assert r.returncode == 2
    assert f"diff_id mismatch: expected sha256:{'ab' * 32}" in one_line_error(r)
    assert _stored(pyvmm.root) == before


class _CutOnce(_Quiet):
    """A proxy to the registry that sends the first blob download only half-way, then
    drops the connection (or, with ``stall`` set, holds it open, silent, until
    ``stall`` is cleared); it records the Range of every blob request."""

    upstream: int
    ranges: list[str | None]
    stall: threading.Event | None = None
    half_sent: threading.Event | None = None

    def do_GET(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request("GET", self.path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        blob = "/blobs/sha256:" in self.path and len(body) > 1000  # a layer, not the config
        if blob:
            self.ranges.append(self.headers.get("Range"))
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("date", "server"):
                self.send_header(k, v)
        self.end_headers()
        if blob and len(self.ranges) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if self.stall is not None:
                self.half_sent.set()
                while self.stall.is_set():
                    time.sleep(0.05)
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


def test_a_pull_cut_off_mid_blob_resumes_with_range(pyvmm, registry, tmp_path):
    image = _fresh_image(pyvmm, tmp_path, "resumed", size=2_000_000)
    pushed = _digest(pyvmm.ok("image", "push", "resumed", f"{registry.host}/t/resumed"))
    pyvmm.ok("image", "rm", "resumed")
    blob = _manifest(registry, "t/resumed", pushed)["layers"][0]
    handler = type("Cut", (_CutOnce,), {"upstream": registry.port, "ranges": []})
    proxy = Loopback(handler)
    try:
        pyvmm.ok("image", "pull", f"{proxy.host}/t/resumed", "resumed")
    finally:
        proxy.stop()
    first, second = handler.ranges
    assert first is None and second.startswith("bytes=") and second != "bytes=0-"
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) < blob["size"]
    assert json.loads(pyvmm.ok("image", "inspect", "resumed"))["layers"] == image["layers"]
    pyvmm.ok("image", "rm", "resumed")


def test_ctrl_c_mid_download_ends_the_pull_at_once_and_leaves_nothing(pyvmm, registry, tmp_path):
    """A download stalled half-way (a read that could wait a minute): SIGINT ends the
    pull in a moment, with status 130 and one line, and nothing in the store."""
    _fresh_image(pyvmm, tmp_path, "stalled", size=2_000_000)
    pyvmm.ok("image", "push", "stalled", f"{registry.host}/t/stalled")
    pyvmm.ok("image", "rm", "stalled")
    stall, half_sent = threading.Event(), threading.Event()
    stall.set()
    handler = type("Stall", (_CutOnce,), {"upstream": registry.port, "ranges": [],
                                          "stall": stall, "half_sent": half_sent})  # fmt: skip
    proxy = Loopback(handler)
    before = _stored(pyvmm.root)
    try:
        env = {**os.environ, "PYVMM_ROOT": str(pyvmm.root)}
        with subprocess.Popen([*pyvmm.command, "image", "pull", f"{proxy.host}/t/stalled"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as proc:  # fmt: skip
            try:
                assert half_sent.wait(60), "the pull never reached the layer"
                time.sleep(0.3)
                proc.send_signal(signal.SIGINT)
                # Well short of the minute a blocked read may wait (registry.TIMEOUT).
                _, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 130 and err.strip() == "pyvmm: interrupted", err
        assert _stored(pyvmm.root) == before
    finally:
        stall.clear()
        proxy.stop()


def _authfile(path: Path, host: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {f"http://{host}/v2/": {"auth": auth}}}))
    return path


def test_basic_auth_with_htpasswd(pyvmm, tmp_path):
    secret = "s3cret-" + os.urandom(4).hex()
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "student", secret], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "htpasswd").write_text(htpasswd)
    reg = Registry(
        tmp_path, {"htpasswd": {"realm": "pyvmm-test", "path": str(tmp_path / "htpasswd")}}
    )
    try:
        _fresh_image(pyvmm, tmp_path, "basic")
        dest = f"{reg.host}/t/basic"
        r = pyvmm("image", "push", "basic", dest)
        assert r.returncode == 2 and "authentication required" in one_line_error(r)
        wrong = _authfile(tmp_path / "wrong.json", reg.host, "student", "not-" + secret)
        r = pyvmm("image", "push", "--authfile", wrong, "basic", dest)
        assert r.returncode == 2 and "unauthorized" in one_line_error(r)
        assert "not-" + secret not in r.stderr + r.stdout
        good = _authfile(tmp_path / "good.json", reg.host, "student", secret)
        out = pyvmm.ok("image", "push", "--authfile", good, "basic", dest)
        pyvmm.ok("image", "rm", "basic")
        out += pyvmm.ok("image", "pull", "--authfile", good, dest)
        assert secret not in out
        pyvmm.ok("image", "rm", "basic")
    finally:
        reg.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenServer(_Quiet):
    """token.md's token endpoint: Basic credentials in, a signed JWT granting the
    scopes asked for out. Signed by openssl with the key whose certificate the registry
    trusts (``rootcertbundle``); the certificate travels in the ``x5c`` header."""

    key: Path
    cert_der: bytes
    password: str
    asked: list[tuple[str | None, list[str]]]

    def do_GET(self) -> None:
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query)
        expected = "Basic " + base64.b64encode(f"student:{self.password}".encode()).decode()
        scopes = query.get("scope", [])
        self.asked.append((self.headers.get("Authorization") == expected, scopes))
        if self.headers.get("Authorization") != expected:
            self.send(401, b'{"details":"bad credentials"}')
            return
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": "pyvmm-test-issuer", "sub": "student", "aud": query["service"][0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}  # fmt: skip
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.key], input=signed.encode(),
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        token = f"{signed}.{_b64url(signature)}"
        self.send(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})


def test_bearer_token_flow(pyvmm, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "1", "-subj", "/CN=pyvmm-test-issuer"],
        capture_output=True, check=True,
    )  # fmt: skip
    der = subprocess.run(
        ["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True
    ).stdout
    secret = "tok-" + os.urandom(4).hex()
    handler = type("Tokens", (_TokenServer,), {"key": key, "cert_der": der, "password": secret,
                                               "asked": []})  # fmt: skip
    tokens = Loopback(handler)
    try:
        reg = Registry(tmp_path, {"token": {
            "realm": f"http://{tokens.host}/token", "service": "pyvmm-test-registry",
            "issuer": "pyvmm-test-issuer", "rootcertbundle": str(cert)}})  # fmt: skip
        try:
            _fresh_image(pyvmm, tmp_path, "bearer")
            dest = f"{reg.host}/t/bearer"
            r = pyvmm("image", "push", "bearer", dest)
            assert r.returncode == 2 and "token server refused" in one_line_error(r)
            good = _authfile(tmp_path / "good.json", reg.host, "student", secret)
            out = pyvmm.ok("image", "push", "--authfile", good, "bearer", dest)
            pyvmm.ok("image", "rm", "bearer")
            out += pyvmm.ok("image", "pull", "--authfile", good, dest)
            assert secret not in out
            assert (True, ["repository:t/bearer:pull,push"]) in handler.asked
            assert (True, ["repository:t/bearer:pull"]) in handler.asked
            pyvmm.ok("image", "rm", "bearer")
        finally:
            reg.stop()
    finally:
        tokens.stop()


_CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()
_CONFIG_DIGEST = "sha256:" + hashlib.sha256(_CONFIG).hexdigest()


class _Hostile(_Quiet):
    """A "registry" whose manifests redirect to a local file, or loop, or are too big,
    or list more layers than an image may have."""

    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send(200, b"{}")
        elif self.path.endswith(_CONFIG_DIGEST):
            self.send(200, _CONFIG)
        elif "/many/" in self.path:
            layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                     "digest": "sha256:" + "0" * 64, "size": 1}  # fmt: skip
            config = {"digest": _CONFIG_DIGEST, "size": len(_CONFIG)}
            body = json.dumps({"schemaVersion": 2, "config": config, "layers": [layer] * 126})
            self.send(200, body.encode(), {"Content-Type": OCI_MANIFEST})
        elif "/badurl/" in self.path:
            self.send(302, headers={"Location": "http://[::1"})
        elif "/file/" in self.path:
            self.send(302, headers={"Location": "file:///etc/passwd"})
        elif "/huge/" in self.path:
            self.send(200, b" " * (5 << 20), {"Content-Type": DOCKER_MANIFEST})
        else:
            self.send(302, headers={"Location": self.path})


@pytest.mark.parametrize(
    "repo, wanted",
    [("file", "redirect to file URL refused"), ("loop", "more than 5 redirects"),
     ("huge", "larger than 4 MiB"), ("many", "126 layers, more than 125"),
     ("badurl", "which is not a URL")],
)  # fmt: skip
def test_a_hostile_registry_is_one_line_and_leaves_nothing(pyvmm, repo, wanted):
    server = Loopback(_Hostile)
    try:
        before = _stored(pyvmm.root)
        r = pyvmm("image", "pull", f"{server.host}/{repo}/x:1")
        assert r.returncode == 2 and wanted in one_line_error(r)
        assert _stored(pyvmm.root) == before
    finally:
        server.stop()


@pytest.mark.parametrize(
    "ref, wanted",
    [("Upper/Case", "invalid reference"), ("x:bad tag!", "invalid tag"),
     ("x@sha256:abc", "not a sha256 digest"), ("127.0.0.1:1/x", "127.0.0.1:1"),
     ("localhost:99999/x", "no valid port")],
)  # fmt: skip
def test_bad_references_and_unreachable_registries_are_one_line(pyvmm, ref, wanted):
    r = pyvmm("image", "pull", ref)
    assert r.returncode in (1, 2) and wanted in one_line_error(r)
