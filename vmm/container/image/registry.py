"""A client of the OCI distribution API: plain HTTP and content addresses.

A registry serves ``/v2/<name>/manifests/<reference>`` and ``/v2/<name>/blobs/<digest>``
(distribution-spec, spec.md "Pull", "Push"); everything else is how to be let in and
how not to be fooled:

- **Authentication** as Docker does it: a ``GET /v2/`` answered 401 carries a
  ``WWW-Authenticate`` challenge; ``Bearer`` sends the client to the token server it
  names (``realm``, with ``service`` and a ``scope`` per repository and action) for a
  token, with the user's credentials if it has any; ``Basic`` takes the credentials
  directly. Credentials come from a ``~/.docker/config.json``-style file
  (``auths.<registry>.auth``, base64 of ``user:password``), and neither they nor a
  token ever appear in a message.
- **A registry is untrusted input**: every document is bounded and verified against
  the digest that names it, every blob is hashed while it is read and cut off at its
  descriptor's size, redirects (blobs are often served from elsewhere) are followed
  only to http(s), never from https down to http, a bounded number of times, and
  credentials never follow them to another host. Every failure is one line.
- A blob download that breaks off resumes where it stopped with a ``Range`` request.

TLS is used for every registry but a loopback one (``localhost``, ``127.0.0.0/8``,
``::1``), which Docker too treats as insecure by default, or where ``plain_http`` says.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import queue
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from vmm.container.image.imagespec import ImageError
from vmm.container.image.layout import MAX_DOCUMENT
from vmm.container.image.reference import DOCKER_HUB, Reference
from vmm.errors import PyvmmError

# Accept for a manifest: both formats' manifests and indexes (media-types.md, and
# Docker's image manifest v2 schema 2).
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# Go's net/http follows at most 10 redirects; a registry needs one (to its storage).
MAX_REDIRECTS = 5
# How many times one blob download may break off and resume before giving up.
MAX_RESUMES = 5
# A token server's answer, an error body: small JSON.
MAX_SMALL = 1 << 20
TIMEOUT = 60.0
CHUNK = 1 << 16
# Docker's default max-concurrent-downloads and -uploads.
PARALLEL = 3
_REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")
R = TypeVar("R")
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]*))')


class RegistryError(PyvmmError):
    """A registry that refused, failed, or answered with something it should not have."""


class Unreachable(RegistryError):
    """No answer at all: the network, not the input (exit status 1, as Docker's)."""

    exit_code = 1


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never printed, even by a debugger's repr
        return "Credentials(...)"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def default_authfile() -> Path:
    """Docker's: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return Path(base) / "config.json"


def _auth_key(key: str) -> str:
    """A config.json ``auths`` key as a registry name: ``https://host/v1/`` is ``host``;
    Docker Hub's legacy key ``index.docker.io`` is ``docker.io``."""
    host = urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/")[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host


def credentials(registry: str, authfile: Path | None = None) -> Credentials | None:
    """The credentials ``authfile`` (default: Docker's) holds for ``registry``, if any."""
    path = authfile or default_authfile()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SMALL + 1)
    except FileNotFoundError:
        if authfile is not None:
            raise RegistryError(f"auth file {path} does not exist") from None
        return None
    except OSError as e:
        raise RegistryError(f"auth file {path}: {e.strerror}") from None
    try:
        if len(data) > MAX_SMALL:
            raise ValueError
        auths = json.loads(data).get("auths") or {}
        for key, entry in auths.items():
            if _auth_key(key) == registry and entry.get("auth"):
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
                if not sep:
                    raise ValueError
                return Credentials(user, password)
    except (ValueError, AttributeError, TypeError, UnicodeDecodeError):
        raise RegistryError(f"auth file {path}: not a config.json with auths") from None
    return None


def _split(url: str, base: str = "") -> urllib.parse.SplitResult:
    """``url`` (relative to ``base``) split; one line if it is not a URL (a registry's
    Location header or token realm is untrusted: ``http://[::1`` raises ValueError)."""
    try:
        return urllib.parse.urlsplit(urllib.parse.urljoin(base, url) if base else url)
    except ValueError:
        raise RegistryError(f"the registry gave {url!r:.80}, which is not a URL") from None


def _is_loopback(host: str) -> bool:
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _error_line(resp: http.client.HTTPResponse) -> str:
    """The registry's own words for a failure (spec.md "Error Codes"), bounded."""
    try:
        errors = json.loads(resp.read(MAX_SMALL))["errors"]
        first = errors[0]
        return f"{first['code']}: {first.get('message', '')}"[:200].splitlines()[0]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OSError):
        return f"HTTP {resp.status} {resp.reason}"[:200]
    except http.client.HTTPException:
        return f"HTTP {resp.status}"


class Client:
    """One registry, as one user: requests with authentication and confined redirects."""

    def __init__(self, ref: Reference, creds: Credentials | None, plain_http: bool = False):
        self.name = ref.registry
        scheme = "http" if plain_http or _is_loopback(ref.host) else "https"
        self.base = f"{scheme}://{ref.host}"
        self.creds = creds
        self.challenge: tuple[str, dict[str, str]] | None = None
        self.tokens: dict[tuple[str, ...], str] = {}
        self.lock = threading.Lock()

    # -- plain requests ---------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict, body=None) -> http.client.HTTPResponse:
        """One request, following redirects within the rules in the module docstring."""
        origin = _split(url)
        for _ in range(MAX_REDIRECTS + 1):
            u = _split(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise RegistryError(
                    f"{self.name}: redirect to {u.scheme or 'a relative'} URL refused"
                )
            try:
                port = u.port
            except ValueError:
                raise RegistryError(f"{self.name}: {u.netloc!r:.80} has no valid port") from None
            if origin.scheme == "https" and u.scheme == "http":
                raise RegistryError(f"{self.name}: redirect from https to http refused")
            if u.netloc != origin.netloc:
                headers = {k: v for k, v in headers.items() if k != "Authorization"}
            if u.scheme == "https":
                conn = http.client.HTTPSConnection(
                    u.hostname, port, timeout=TIMEOUT, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(u.hostname, port, timeout=TIMEOUT)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            try:
                conn.request(method, path, body, headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
                raise Unreachable(f"{self.name}: {method} {u.path}: {reason}") from None
            if resp.status in _REDIRECTS and method in ("GET", "HEAD"):
                location = resp.getheader("Location") or ""
                conn.close()
                url = _split(location, url).geturl()
                continue
            return resp
        raise RegistryError(f"{self.name}: more than {MAX_REDIRECTS} redirects")

    # -- authentication ---------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: is this a registry, and how does it want us to log in?"""
        resp = self._send("GET", f"{self.base}/v2/", {})
        try:
            if resp.status == 401:
                header = resp.getheader("WWW-Authenticate") or ""
                scheme, _, rest = header.strip().partition(" ")
                params = {m[0].lower(): m[1] or m[2] for m in _PARAM.findall(rest)}
                if scheme.lower() not in ("bearer", "basic"):
                    raise RegistryError(f"{self.name}: unsupported authentication {scheme!r:.40}")
                self.challenge = (scheme.lower(), params)
            elif resp.status != 200:
                raise RegistryError(f"{self.name}: not a registry ({_error_line(resp)})")
        finally:
            resp.close()

    def _authorization(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self.challenge is None:
            return {}
        scheme, params = self.challenge
        if scheme == "basic":
            if self.creds is None:
                raise RegistryError(f"{self.name}: authentication required (no credentials)")
            return {"Authorization": self.creds.basic()}
        with self.lock:
            if scopes not in self.tokens:
                self.tokens[scopes] = self._token(params, scopes)
            return {"Authorization": f"Bearer {self.tokens[scopes]}"}

    def _token(self, params: dict[str, str], scopes: tuple[str, ...]) -> str:
        """token.md: ``GET realm?service=...&scope=...``, with Basic credentials if any."""
        realm = _split(params.get("realm", ""))
        if realm.scheme not in ("http", "https") or not realm.hostname:
            raise RegistryError(f"{self.name}: token realm is not an http(s) URL")
        if realm.scheme == "http" and self.base.startswith("https:"):
            raise RegistryError(f"{self.name}: token realm over plain http refused")
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in scopes]
        url = urllib.parse.urlunsplit(realm._replace(query=urllib.parse.urlencode(query)))
        headers = {"Authorization": self.creds.basic()} if self.creds else {}
        # The realm is the token server's own address: credentials may go there.
        resp = self._send("GET", url, headers)
        try:
            if resp.status != 200:
                raise RegistryError(f"{self.name}: token server refused ({_error_line(resp)})")
            answer = json.loads(resp.read(MAX_SMALL + 1)[:MAX_SMALL])
            token = answer.get("token") or answer.get("access_token")
            if not isinstance(token, str) or not token.isprintable():
                raise ValueError
            return token
        except (ValueError, AttributeError):
            raise RegistryError(f"{self.name}: token server's answer is not a token") from None
        finally:
            resp.close()

    def request(
        self,
        method: str,
        path: str,
        scopes: tuple[str, ...],
        headers: dict | None = None,
        body=None,
        ok: tuple[int, ...] = (200,),
        what: str = "",
    ) -> http.client.HTTPResponse:
        """``method`` on ``path`` (under the registry, or a URL it gave) with the token
        for ``scopes``; a status not in ``ok`` is a one-line error about ``what``."""
        url = _split(path, self.base + "/").geturl()
        if _split(url).netloc != _split(self.base).netloc:
            raise RegistryError(f"{self.name}: {what or path} is on another host")
        resp = self._send(method, url, {**(headers or {}), **self._authorization(scopes)}, body)
        if resp.status == 401 and self.challenge and self.challenge[0] == "bearer":
            # A token lasts minutes (Docker Hub's five): a long pull outlives it. Once
            # more with a new one, the body (bytes, or a file) sent again from its start.
            resp.close()
            with self.lock:
                self.tokens.pop(scopes, None)
            if hasattr(body, "seek"):
                body.seek(0)
            headers = {**(headers or {}), **self._authorization(scopes)}
            resp = self._send(method, url, headers, body)
        if resp.status not in ok:
            try:
                if resp.status == 401:
                    raise RegistryError(f"{self.name}: {what or path}: unauthorized")
                raise RegistryError(f"{self.name}: {what or path}: {_error_line(resp)}")
            finally:
                resp.close()
        return resp

    # -- content ----------------------------------------------------------------------

    def document(
        self, path: str, scopes: tuple[str, ...], what: str, digest: str | None, size: int | None
    ) -> tuple[bytes, str, str]:
        """A manifest, an index or a config: (bytes, Content-Type, digest), bounded and
        checked against ``digest`` and ``size`` where known, else against the digest
        the registry claims for it (``Docker-Content-Digest``), if it claims one."""
        resp = self.request("GET", path, scopes, {"Accept": MANIFEST_ACCEPT}, what=what)
        try:
            data = resp.read(MAX_DOCUMENT + 1)
            claimed = resp.getheader("Docker-Content-Digest")
            media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(f"{self.name}: {what}: {e or type(e).__name__}") from None
        finally:
            resp.close()
        if len(data) > MAX_DOCUMENT:
            raise ImageError(f"{what} is larger than {MAX_DOCUMENT >> 20} MiB")
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        want = digest or (claimed if claimed and claimed.startswith("sha256:") else None)
        if want is not None and actual != want:
            raise ImageError(f"{what}: digest mismatch: expected {want}, actual {actual}")
        if size is not None and len(data) != size:
            raise ImageError(f"{what}: {len(data)} bytes where its descriptor gives {size}")
        return data, media_type, actual

    def download(
        self,
        repo: str,
        digest: str,
        size: int,
        out: BinaryIO,
        scopes: tuple[str, ...],
        progress: Callable[[int], None] = lambda n: None,
        stop: threading.Event | None = None,
    ) -> None:
        """Blob ``digest`` into ``out``: hashed as it comes, never past ``size``, and
        resumed with ``Range`` where the connection breaks (up to MAX_RESUMES times)."""
        what = f"blob {digest[:19]}"
        sha, got, breaks = hashlib.sha256(), 0, 0
        while True:
            headers = {"Range": f"bytes={got}-"} if got else {}
            resp = self.request(
                "GET", f"/v2/{repo}/blobs/{digest}", scopes, headers, ok=(200, 206), what=what
            )
            try:
                if got and resp.status == 200:  # the range was ignored: start again
                    sha, got = hashlib.sha256(), 0
                    out.seek(0)
                    out.truncate()
                elif resp.status == 206 and not (resp.getheader("Content-Range") or "").startswith(
                    f"bytes {got}-"
                ):
                    raise RegistryError(f"{self.name}: {what}: answered another range")
                while chunk := resp.read(CHUNK):
                    if stop is not None and stop.is_set():
                        raise KeyboardInterrupt
                    got += len(chunk)
                    if got > size:
                        raise ImageError(
                            f"{what}: longer than the {size} bytes its descriptor says"
                        )
                    sha.update(chunk)
                    out.write(chunk)
                    progress(got)
            except (OSError, http.client.HTTPException):
                pass  # broken off: resumed below
            finally:
                resp.close()
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if got == size:
                break
            breaks += 1
            if breaks > MAX_RESUMES:
                raise Unreachable(
                    f"{self.name}: {what}: broken off {breaks} times, at {got}/{size} bytes"
                )
            time.sleep(0.1 * breaks)
        actual = "sha256:" + sha.hexdigest()
        if actual != digest:
            raise ImageError(f"{what}: digest mismatch: expected {digest}, actual {actual}")

    def has_blob(self, repo: str, digest: str, scopes: tuple[str, ...]) -> bool:
        """spec.md "Checking if content exists": HEAD answers 200 or 404."""
        resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scopes, ok=(200, 404), what=f"blob {digest[:19]}"
        )
        resp.close()
        return resp.status == 200

    def mount(self, repo: str, digest: str, source: str, scopes: tuple[str, ...]) -> bool:
        """spec.md "Mounting a blob from another repository": 201 if it was mounted;
        202 (an upload session instead) is cancelled, and the blob must be uploaded."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        resp = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/?{query}", scopes, {"Content-Length": "0"},
            ok=(201, 202), what=f"mount of {digest[:19]}",
        )  # fmt: skip
        resp.close()
        if resp.status == 202 and resp.getheader("Location"):
            self.request(
                "DELETE", resp.getheader("Location"), scopes, ok=(200, 202, 204, 404),
                what="cancelled upload",
            ).close()  # fmt: skip
        return resp.status == 201

    def upload(
        self, repo: str, digest: str, size: int, f: BinaryIO, scopes: tuple[str, ...]
    ) -> None:
        """spec.md "Pushing a blob monolithically": POST for a session, PUT the bytes."""
        what = f"upload of {digest[:19]}"
        resp = self.request(
            "POST", f"/v2/{repo}/blobs/uploads/", scopes, {"Content-Length": "0"}, ok=(202,),
            what=what,
        )  # fmt: skip
        resp.close()
        location = resp.getheader("Location")
        if not location:
            raise RegistryError(f"{self.name}: {what}: no upload location")
        u = _split(location)
        query = urllib.parse.parse_qsl(u.query) + [("digest", digest)]
        url = urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(query)))
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        self.request("PUT", url, scopes, headers, f, ok=(201,), what=what).close()


def parallel(work: Callable[[T], R], items: list[T], stop: threading.Event) -> list[R]:
    """``work`` on each of ``items``, PARALLEL at a time; the results in order, or the
    first exception. The threads are daemons, and ``stop`` is set on the way out: a
    Ctrl-C or a failure returns at once, and a thread still blocked on the network (a
    read can wait TIMEOUT seconds) gives up at its next chunk or dies with the process
    instead of holding it up. Its exception is kept in the queue, never printed."""
    pending: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()
    for entry in enumerate(items):
        pending.put(entry)

    def worker() -> None:
        while not stop.is_set():
            try:
                i, item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, work(item), None))
            except BaseException as e:  # handed to the caller
                done.put((i, None, e))

    for _ in range(min(PARALLEL, len(items))):
        threading.Thread(target=worker, daemon=True).start()
    results: list = [None] * len(items)
    try:
        for _ in items:
            i, result, error = done.get()
            if error is not None:
                raise error
            results[i] = result
    finally:
        stop.set()
    return results


def scopes(repo: str, *actions: str, also: tuple[str, ...] = ()) -> tuple[str, ...]:
    """token.md's scopes: ``repository:NAME:ACTIONS`` for ``repo`` and ``also``'s repos
    (pull only: a mount's source)."""
    return (f"repository:{repo}:{','.join(actions)}", *(f"repository:{r}:pull" for r in also))


def connect(ref: Reference, authfile: Path | None = None, plain_http: bool = False) -> Client:
    """A client for ``ref``'s registry, with the user's credentials for it, pinged."""
    client = Client(ref, credentials(ref.registry, authfile), plain_http)
    client.ping()
    return client
