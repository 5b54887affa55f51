"""A synchronous registry client (OCI distribution spec): resolve, fetch and push.

    client = RegistryClient(config_path="/etc/berth/certs.d", mirrors=[...], insecure=[...])
    name, desc = client.resolve("busybox")                  # HEAD, then GET, /v2/<repo>/manifests/<ref>
    data = client.fetch_manifest(name, desc.digest)         # verified against the digest, <= 4 MiB
    with store.writer(ref, blob.digest, blob.size) as w:
        client.fetch_blob(name, blob, w, offset=w.offset)   # Range resume; size checked
        w.commit()
    client.push_blob(repo, blob, fileobj, mount_from="library/base")
    client.push_manifest(repo, "v1", desc.media_type, data)

Each registry's endpoints come from :func:`berth.remotes.hosts.load_hosts`
(read at every operation); the endpoints that have the needed capability
(resolve, pull, push) are tried in order, and any failure but the last one's
moves on to the next endpoint: the error reported is the last endpoint's.
Blob downloads that break off are resumed with a Range request, on the same
endpoint (a few times) or on the next. Redirects (a 307 to blob storage) are
followed, without the registry's Authorization header when they leave its
host. Authentication (bearer tokens, basic) is done by
:class:`berth.remotes.auth.Authorizer`, with credentials from a docker
config.json by default.

Errors are berth.errors classes with one-line messages: NotFound (missing
manifest or blob), Unavailable (unreachable, 5xx, timeouts), InvalidArgument
(bad data: digest or size mismatch, oversized manifest, bad media type),
PermissionDenied (401/403). The client is safe to share between threads.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Self

from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from berth.oci import mediatypes as mt
from berth.oci.digest import digest_bytes, is_digest, parse_digest
from berth.oci.reference import Reference
from berth.oci.reference import parse as parse_reference

from .auth import Authorizer, Credentials, PermissionDenied, docker_credentials
from .hosts import PULL, PUSH, RESOLVE, Endpoint, endpoints_for, load_hosts
from .transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    DEFAULT_TLS,
    ConnectionFailed,
    Response,
    TLSOptions,
    Transport,
)

log = logging.getLogger("berth.remotes")

MAX_MANIFEST_SIZE = 4 << 20
CHUNK = 1 << 20
_MAX_ERROR_BODY = 64 << 10
_MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
ACCEPT = ", ".join(mt.MANIFEST_ACCEPT) + ", */*;q=0.1"
_GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})
USER_AGENT = "berth/0.1"


@dataclass(frozen=True)
class Descriptor:
    """What the registry client needs of an OCI descriptor."""

    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        parse_digest(self.digest)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidArgument(f"invalid descriptor size {self.size!r} for {self.digest}")

    def to_dict(self) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Descriptor:
        try:
            return cls(d.get("mediaType", ""), d["digest"], d["size"], tuple(d.get("urls") or ()),
                       dict(d.get("annotations") or {}))
        except (KeyError, TypeError, AttributeError):
            raise InvalidArgument("invalid descriptor: needs digest and size") from None


def as_descriptor(obj) -> Descriptor:
    """A Descriptor from a Descriptor, an OCI JSON mapping, or any object with
    ``media_type``/``mediaType``, ``digest`` and ``size`` attributes."""
    if isinstance(obj, Descriptor):
        return obj
    if isinstance(obj, Mapping):
        return Descriptor.from_dict(obj)
    try:
        media = getattr(obj, "media_type", None) or getattr(obj, "mediaType", "") or ""
        return Descriptor(media, str(obj.digest), obj.size)
    except AttributeError:
        raise InvalidArgument(f"not a descriptor: {type(obj).__name__}") from None


def _as_ref(ref: Reference | str) -> Reference:
    if isinstance(ref, Reference):
        return ref if (ref.tag or ref.digest) else ref.with_tag("latest")
    return parse_reference(ref)


def _as_repo(repo: Reference | str) -> Reference:
    """The repository of a reference (tag and digest dropped)."""
    r = repo if isinstance(repo, Reference) else parse_reference(repo, default_tag=None)
    return Reference(r.domain, r.path)


def _with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    if not params:
        return url
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True) + list(params)
    return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q)))


def _origin(url: str) -> tuple[str, str]:
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.netloc.lower()


def _registry_message(data: bytes) -> str:
    """The first error of a registry's {"errors": [...]} body, one line, as docker's distribution
    client says it (`manifest unknown: manifest unknown`: the code's words, then the message)."""
    try:
        doc = json.loads(data)
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if errs and isinstance(errs[0], dict):
            code = str(errs[0].get("code") or "").lower().replace("_", " ")
            msg = str(errs[0].get("message") or "")
            text = f"{code}: {msg}" if code and msg else (msg or code)  # Go's errcode.Error: both, always
            return " ".join(text.split())[:300]
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, IndexError):
        pass
    text = data.decode("utf-8", "replace").strip()
    return " ".join(text.split())[:200] if text and len(text) < 500 and "<" not in text else ""


class TooManyRequests(Unavailable):
    """A registry's 429: its rate limit (a pull does not try the layer again, as dockerd's)."""


class _Abort(Exception):
    """Carries an error that must not make the client try the next endpoint."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


class _Body:
    """At most ``size`` bytes of a file object, rewindable when the file is seekable."""

    def __init__(self, fileobj: BinaryIO, size: int, progress: Callable[[int], None] | None = None,
                 progress_base: int = 0):
        self._f = fileobj
        self._size = size
        self._left = size
        self._progress = progress
        self._base = progress_base
        try:
            self._start = fileobj.tell() if fileobj.seekable() else None
        except (AttributeError, OSError):
            self._start = None

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        if not data:
            raise _Abort(InvalidArgument(f"upload source ended {self._left} bytes before the expected {self._size}"))
        self._left -= len(data)
        if self._progress is not None:
            try:
                self._progress(self._base + self._size - self._left)
            except BerthError as e:
                raise _Abort(e) from None
        return data

    def can_rewind(self) -> bool:
        return self._start is not None

    def rewind(self) -> None:
        if self._start is None:
            raise _Abort(FailedPrecondition("cannot re-send an upload from a stream that is not seekable"))
        self._f.seek(self._start)
        self._left = self._size


class RegistryClient:
    """Talks to registries for one engine; see the module docstring.

    ``config_path``: containerd-style hosts directory (None: defaults only).
    ``mirrors``: docker's registry-mirrors for docker.io. ``host_mirrors``:
    containerd's legacy CRI mirrors (host or "*" -> URLs). ``insecure``: hosts
    (or CIDRs) allowed without TLS verification / over plain HTTP.
    ``credentials``: ``host -> Credentials | (user, password) | None``; by
    default the docker config.json at ``docker_config`` (or ``~/.docker``) is
    read at each lookup. ``chunk_size``: None uploads a blob in one PUT, a
    number uploads it in PATCH chunks of that size.
    """

    def __init__(
        self,
        config_path=None,
        *,
        mirrors: Sequence[str] | None = None,
        insecure: Sequence[str] = (),
        host_mirrors: Mapping[str, Sequence[str]] | None = None,
        credentials: Callable[[str], Credentials | tuple[str, str] | None] | None = None,
        docker_config: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        user_agent: str = USER_AGENT,
        chunk_size: int | None = None,
        max_manifest_size: int = MAX_MANIFEST_SIZE,
        retries: int = 3,
    ):
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidArgument("chunk_size must be positive")
        self.config_path = config_path
        self.mirrors = list(mirrors or ())
        self.host_mirrors = dict(host_mirrors or {})
        self.insecure = tuple(insecure or ())
        self.chunk_size = chunk_size
        self.max_manifest_size = max_manifest_size
        self.retries = max(1, retries)
        self.transport = Transport(timeout=timeout, connect_timeout=connect_timeout, user_agent=user_agent)
        if credentials is None:
            credentials = docker_credentials(docker_config)
        self.authorizer = Authorizer(credentials, self._token_fetch)
        self._cache_lock = threading.Lock()
        self._manifests: OrderedDict[str, bytes] = OrderedDict()
        self._endpoint_tls: dict[str, tuple[TLSOptions, bool, float | None]] = {}

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- endpoints -----------------------------------------------------------

    def hosts(self, registry: str) -> list[Endpoint]:
        """All endpoints for a registry host, freshly read from the configuration."""
        return load_hosts(self.config_path, registry, mirrors=self.mirrors, insecure=self.insecure,
                          host_mirrors=self.host_mirrors)

    def _try_endpoints(self, registry: str, capability: str, fn: Callable[[Endpoint], object]):
        eps = endpoints_for(self.hosts(registry), capability)
        if not eps:
            raise FailedPrecondition(f"no endpoint of registry {registry} is configured to {capability}")
        last: BaseException | None = None
        for i, ep in enumerate(eps):
            try:
                return fn(ep)
            except _Abort as a:
                raise a.error from None
            except BerthError as e:
                if i == len(eps) - 1:
                    raise
                log.info("registry endpoint %s failed (%s), trying the next one", ep, e)
                last = e
        raise last  # pragma: no cover - the loop always returns or raises

    def _url(self, ep: Endpoint, registry: str, suffix: str, capability: str) -> str:
        url = ep.url(suffix)
        if ep.mirror and capability in (PULL, RESOLVE):
            url = _with_query(url, [("ns", registry)])
        return url

    # --- HTTP with auth and redirects ------------------------------------------

    def _token_fetch(self, method: str, url: str, headers: dict, body: bytes | None):
        # A realm on a registry endpoint's own host uses that endpoint's TLS settings.
        with self._cache_lock:
            tls, fallback, dial = self._endpoint_tls.get(_origin(url)[1], (DEFAULT_TLS, False, None))
        resp = self.transport.request(method, url, headers=headers, body=body, tls=tls,
                                      connect_timeout=dial, http_fallback=fallback)
        with resp:
            data = resp.read_limited(1 << 20, "token response") if resp.status == 200 else resp.read_limited(
                _MAX_ERROR_BODY, "token error")
            return resp.status, resp.headers, data

    def _send(self, ep: Endpoint, method: str, url: str, scopes: Iterable[str], *,
              headers: dict | None = None, body=None, follow: bool = True) -> Response:
        """One request to an endpoint with auth (one retry after a 401) and redirects."""
        scopes = list(scopes)
        tls = TLSOptions(ep.skip_verify, ep.ca_files, ep.client_certs)
        base = dict(headers or {})
        ep_headers: dict[str, str] = {}
        for k, v in ep.headers:
            ep_headers[k] = f"{ep_headers[k]}, {v}" if k in ep_headers else v
        ep_origin = _origin(ep.base_url)
        with self._cache_lock:
            self._endpoint_tls[ep.host.lower()] = (tls, ep.http_fallback, ep.dial_timeout)
        auth = self.authorizer.authorization(ep.host, scopes)
        retried_auth = False
        redirects = 0
        while True:
            origin = _origin(url)
            same = origin[1] == ep_origin[1]
            hdrs = dict(ep_headers) if same else {}
            hdrs.update(base)
            if same and auth:
                hdrs["Authorization"] = auth
            resp = self.transport.request(method, url, headers=hdrs, body=body,
                                          tls=tls if same else DEFAULT_TLS,
                                          connect_timeout=ep.dial_timeout,
                                          http_fallback=ep.http_fallback and same)
            if resp.status == 401 and same and not retried_auth:
                challenges = resp.header_all("WWW-Authenticate")
                try:
                    new = self.authorizer.handle_unauthorized(ep.host, scopes, challenges, auth) if challenges else None
                except BaseException:
                    resp.close()
                    raise
                if new and (body is None or isinstance(body, bytes) or
                            (isinstance(body, _Body) and body.can_rewind())):
                    resp.close()
                    if isinstance(body, _Body):
                        body.rewind()
                    auth, retried_auth = new, True
                    continue
            if follow and resp.status in _REDIRECTS and resp.header("Location"):
                redirects += 1
                if redirects > _MAX_REDIRECTS:
                    resp.close()
                    raise Unavailable(f"{ep.host}: too many redirects")
                loc = urllib.parse.urljoin(resp.url, resp.header("Location"))
                if urllib.parse.urlsplit(loc).scheme not in ("http", "https"):
                    resp.close()
                    raise InvalidArgument(f"{ep.host}: redirect to an unsupported URL")
                status = resp.status
                resp.close()
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, body = "GET", None
                elif body is not None:
                    if isinstance(body, _Body):
                        body.rewind()
                    elif not isinstance(body, bytes):
                        raise InvalidArgument(f"{ep.host}: cannot re-send a request body after a redirect")
                url = loc
                continue
            return resp

    def _status_error(self, resp: Response, what: str, *, op: str = "pull", repo: str | None = None) -> BerthError:
        """Turn an unexpected status into an error (reads a little of the body)."""
        try:
            data = resp.read_limited(_MAX_ERROR_BODY, "error response") if resp.method != "HEAD" else b""
        except BerthError:
            data = b""
        finally:
            resp.close()
        msg = _registry_message(data)
        host = urllib.parse.urlsplit(resp.url).netloc
        detail = f": {msg}" if msg else ""
        s = resp.status
        subject = repo or what
        if s == 401:
            return PermissionDenied(f"{op} access denied for {subject}, repository does not exist or "
                                    f"may require authorization{detail}")
        if s == 403:
            return PermissionDenied(f"{op} access denied for {subject}{detail or ': forbidden'}")
        if s == 404:
            return NotFound(f"{what} not found{detail}")
        if s == 429:
            return TooManyRequests(f"{host}: too many requests{detail}")
        if s >= 500:
            return Unavailable(f"{host}: {s} {resp.reason}{detail}")
        if s in (400, 405, 409, 411, 413, 415, 416, 422):
            return InvalidArgument(f"{host} refused {what}: {s} {resp.reason}{detail}")
        return Unavailable(f"{host}: unexpected status {s} {resp.reason} for {what}{detail}")

    # --- manifests -----------------------------------------------------------

    def _remember(self, digest: str, data: bytes) -> None:
        with self._cache_lock:
            self._manifests[digest] = data
            self._manifests.move_to_end(digest)
            while len(self._manifests) > 16:
                self._manifests.popitem(last=False)

    def _cached(self, digest: str) -> bytes | None:
        with self._cache_lock:
            return self._manifests.get(digest)

    def _check_manifest(self, data: bytes, want: str | None, header: str | None, what: str) -> str:
        """Verify fetched manifest bytes; returns their digest."""
        if header is not None and not is_digest(header):
            header = None  # a malformed header is ignored: the bytes are checked anyway
        if want is not None and header is not None and header != want:
            raise InvalidArgument(f"{what}: registry sent digest {header}, expected {want}")
        expected = want or header
        algo = parse_digest(expected)[0] if expected else "sha256"
        got = digest_bytes(data, algo)
        if expected is not None and got != expected:
            raise InvalidArgument(f"{what}: digest mismatch: expected {expected}, got {got}")
        return got

    @staticmethod
    def _sniff_media_type(data: bytes, content_type: str | None, what: str) -> str:
        ct = mt.normalize(content_type or "")
        if ct not in _GENERIC_TYPES:
            return ct
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument(f"{what}: not a JSON manifest") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{what}: not a JSON manifest")
        if isinstance(doc.get("mediaType"), str) and doc["mediaType"]:
            return mt.normalize(doc["mediaType"])
        if doc.get("schemaVersion") == 1:
            return mt.DOCKER_MANIFEST_SCHEMA1
        if "manifests" in doc:
            return mt.OCI_INDEX
        if "config" in doc and "layers" in doc:
            return mt.OCI_MANIFEST
        raise InvalidArgument(f"{what}: unknown manifest media type")

    def resolve(self, ref: Reference | str) -> tuple[str, Descriptor]:
        """Resolve a reference to ``(name, descriptor)`` of its manifest or index.

        ``name`` is the normalised reference. Uses endpoints with the resolve
        capability: HEAD first, GET when the HEAD answer lacks what is needed.
        """
        r = _as_ref(ref)
        target = r.digest or r.tag
        what = f"manifest for {r.familiar() if r.domain == 'docker.io' else str(r)}"
        scopes = [f"repository:{r.path}:pull"]
        limit = self.max_manifest_size

        def attempt(ep: Endpoint) -> Descriptor:
            url = self._url(ep, r.domain, f"{r.path}/manifests/{target}", RESOLVE)
            hdrs = {"Accept": ACCEPT}
            with self._send(ep, "HEAD", url, scopes, headers=hdrs) as resp:
                if resp.status == 200:
                    dgst = resp.header("Docker-Content-Digest")
                    ctype = mt.normalize(resp.header("Content-Type") or "")
                    size = resp.content_length
                    if size is not None and size > limit:
                        raise InvalidArgument(f"{what} is {size} bytes, more than the limit of {limit}")
                    if dgst and is_digest(dgst) and r.digest and dgst != r.digest:
                        raise InvalidArgument(f"{what}: registry sent digest {dgst}, expected {r.digest}")
                    dgst = r.digest or (dgst if dgst and is_digest(dgst) else None)
                    if dgst and size is not None and ctype not in _GENERIC_TYPES:
                        return Descriptor(ctype, dgst, size)
                # else GET: where HEAD is not supported, and after a 404, whose GET's body says
                # why (dockerd's `manifest for <ref> not found: manifest unknown: manifest unknown`)
                elif resp.status not in (400, 404, 405, 501):
                    raise self._status_error(resp, what, repo=r.familiar_name())
            with self._send(ep, "GET", url, scopes, headers=hdrs) as resp:
                if resp.status != 200:
                    raise self._status_error(resp, what, repo=r.familiar_name())
                data = resp.read_limited(limit, what)
                dgst = self._check_manifest(data, r.digest, resp.header("Docker-Content-Digest"), what)
                media = self._sniff_media_type(data, resp.header("Content-Type"), what)
            self._remember(dgst, data)
            return Descriptor(media, dgst, len(data))

        desc = self._try_endpoints(r.domain, RESOLVE, attempt)
        return str(r), desc

    def fetch_manifest(self, ref: Reference | str, digest: str, *, size: int | None = None) -> bytes:
        """The bytes of the manifest (or index) ``digest`` in ``ref``'s repository, verified."""
        parse_digest(digest)
        r = _as_repo(ref)
        what = f"manifest {digest} of {r.name}"
        if size is not None and size > self.max_manifest_size:
            raise InvalidArgument(f"{what} is {size} bytes, more than the limit of {self.max_manifest_size}")
        data = self._cached(digest)
        if data is not None:
            return data
        scopes = [f"repository:{r.path}:pull"]

        def attempt(ep: Endpoint) -> bytes:
            url = self._url(ep, r.domain, f"{r.path}/manifests/{digest}", PULL)
            with self._send(ep, "GET", url, scopes, headers={"Accept": ACCEPT}) as resp:
                if resp.status != 200:
                    raise self._status_error(resp, what, repo=r.familiar_name())
                body = resp.read_limited(self.max_manifest_size, what)
            self._check_manifest(body, digest, None, what)
            if size is not None and len(body) != size:
                raise InvalidArgument(f"{what}: size mismatch: expected {size} bytes, got {len(body)}")
            return body

        data = self._try_endpoints(r.domain, PULL, attempt)
        self._remember(digest, data)
        return data

    # --- blobs ---------------------------------------------------------------

    def fetch_blob(self, repo: Reference | str, descriptor, dest, offset: int = 0, *,
                   progress: Callable[[int], None] | None = None) -> int:
        """Stream a blob into ``dest`` (anything with ``write(bytes)``: a content-store
        Writer or a file), starting at byte ``offset`` (what ``dest`` already holds).

        Uses a Range request when ``offset`` > 0 or when a download breaks off;
        if the server ignores Range, the bytes before ``offset`` are read and
        dropped. Checks the size; the digest is for ``dest`` (the content store
        verifies it on commit). ``progress(bytes_so_far)`` is called as data
        arrives. Returns the blob size. Errors raised by ``dest`` propagate as
        they are.
        """
        r = _as_repo(repo)
        d = as_descriptor(descriptor)
        if not isinstance(offset, int) or offset < 0 or offset > d.size:
            raise InvalidArgument(f"invalid offset {offset!r} for blob {d.digest} of {d.size} bytes")
        state = {"offset": offset}
        if offset == d.size:
            return d.size
        scopes = [f"repository:{r.path}:pull"]

        def attempt(ep: Endpoint) -> int:
            url = self._url(ep, r.domain, f"{r.path}/blobs/{d.digest}", PULL)
            failures = 0
            while True:
                before = state["offset"]
                try:
                    self._fetch_range(ep, url, scopes, r, d, dest, state, progress)
                    return d.size
                except ConnectionFailed:
                    if state["offset"] > before:
                        failures = 0  # progress was made: keep going
                    failures += 1
                    if failures >= self.retries:
                        raise
                    log.info("download of %s broke off at %d bytes, resuming", d.digest, state["offset"])

        return self._try_endpoints(r.domain, PULL, attempt)

    def _fetch_range(self, ep, url, scopes, r, d: Descriptor, dest, state, progress) -> None:
        offset = state["offset"]
        what = f"blob {d.digest} of {r.name}"
        headers = {"Accept": "*/*"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with self._send(ep, "GET", url, scopes, headers=headers) as resp:
            if resp.status == 206 and offset:
                cr = (resp.header("Content-Range") or "").strip()
                try:
                    unit, _, rng = cr.partition(" ")
                    start = int(rng.split("-", 1)[0])
                except ValueError:
                    start = -1
                if unit.lower() != "bytes" or start != offset:
                    raise InvalidArgument(f"{what}: registry answered a range request with {cr or 'no Content-Range'}")
                skip = 0
                expect = d.size - offset
            elif resp.status == 200:
                skip = offset  # Range ignored: the whole blob is coming
                expect = d.size
            elif resp.status == 416 and offset:
                raise InvalidArgument(f"{what}: registry refused the range from byte {offset}")
            else:
                raise self._status_error(resp, what, repo=r.familiar_name())
            cl = resp.content_length
            if cl is not None and cl != expect:
                raise InvalidArgument(f"{what}: size mismatch: registry sends {cl} bytes, expected {expect}")
            while skip:
                chunk = resp.read(min(skip, CHUNK))
                if not chunk:
                    raise ConnectionFailed(f"{what}: download ended early", sent=True)
                skip -= len(chunk)
            while state["offset"] < d.size:
                chunk = resp.read(min(CHUNK, d.size - state["offset"]))
                if not chunk:
                    if cl is None:
                        raise InvalidArgument(f"{what}: size mismatch: expected {d.size} bytes, got {state['offset']}")
                    raise ConnectionFailed(f"{what}: download ended early", sent=True)
                try:
                    dest.write(chunk)
                except BerthError as e:  # the destination's own failure: no other endpoint will help
                    raise _Abort(e) from None
                state["offset"] += len(chunk)
                if progress is not None:
                    try:
                        progress(state["offset"])
                    except BerthError as e:
                        raise _Abort(e) from None
            if cl is None and resp.read(1):
                raise InvalidArgument(f"{what}: size mismatch: registry sent more than {d.size} bytes")

    def _blob_head(self, ep: Endpoint, r: Reference, digest: str, scopes, capability: str) -> bool:
        url = self._url(ep, r.domain, f"{r.path}/blobs/{digest}", capability)
        with self._send(ep, "HEAD", url, scopes) as resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            raise self._status_error(resp, f"blob {digest} of {r.name}", op="push" if capability == PUSH else "pull",
                                     repo=r.familiar_name())

    def blob_exists(self, repo: Reference | str, digest: str, *, capability: str = PUSH) -> bool:
        """Whether the registry has ``digest`` in ``repo`` (asked of the endpoints that can ``capability``)."""
        parse_digest(digest)
        r = _as_repo(repo)
        action = "pull,push" if capability == PUSH else "pull"
        scopes = [f"repository:{r.path}:{action}"]
        return bool(self._try_endpoints(r.domain, capability,
                                        lambda ep: self._blob_head(ep, r, digest, scopes, capability)))

    def push_blob(self, repo: Reference | str, descriptor, fileobj: BinaryIO,
                  mount_from: Reference | str | None = None, *, chunk_size: int | None = None,
                  progress: Callable[[int], None] | None = None) -> str:
        """Upload a blob unless the registry has it; returns "exists", "mounted" or "uploaded".

        ``mount_from`` names another repository of the same registry that has
        the blob (cross-repository mount). ``chunk_size`` (default: the
        client's) selects a chunked upload (PATCH + PUT); otherwise one PUT.
        ``fileobj`` yields the blob from its current position.
        """
        r = _as_repo(repo)
        d = as_descriptor(descriptor)
        chunk_size = chunk_size if chunk_size is not None else self.chunk_size
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidArgument("chunk_size must be positive")
        source = None
        if mount_from is not None:
            m = _as_repo(mount_from)
            if m.domain == r.domain and m.path != r.path:
                source = m
        scopes = [f"repository:{r.path}:pull,push"]
        if source is not None:
            scopes.append(f"repository:{source.path}:pull")
        what = f"blob {d.digest} to {r.name}"
        body = _Body(fileobj, d.size, progress)
        tried = [False]

        def attempt(ep: Endpoint) -> str:
            if self._blob_head(ep, r, d.digest, scopes, PUSH):
                return "exists"
            uploads = ep.url(f"{r.path}/blobs/uploads/")
            if source is not None:
                url = _with_query(uploads, [("mount", d.digest), ("from", source.path)])
            else:
                url = uploads
            with self._send(ep, "POST", url, scopes) as resp:
                if resp.status == 201 and source is not None:
                    return "mounted"
                if resp.status != 202 or not resp.header("Location"):
                    raise self._status_error(resp, what, op="push", repo=r.familiar_name())
                location = urllib.parse.urljoin(resp.url, resp.header("Location"))
            if tried[0]:
                body.rewind()
            tried[0] = True
            if chunk_size is None or d.size <= chunk_size:
                self._upload_monolithic(ep, location, scopes, d, body, what)
            else:
                self._upload_chunked(ep, location, scopes, d, body, chunk_size, what)
            return "uploaded"

        return self._try_endpoints(r.domain, PUSH, attempt)

    def _finish_upload(self, resp: Response, d: Descriptor, what: str) -> None:
        with resp:
            if resp.status not in (201, 204):
                raise self._status_error(resp, what, op="push")
            got = resp.header("Docker-Content-Digest")
            if got and is_digest(got) and got != d.digest:
                raise InvalidArgument(f"{what}: registry stored digest {got}")

    def _upload_monolithic(self, ep, location, scopes, d: Descriptor, body: _Body, what: str) -> None:
        url = _with_query(location, [("digest", d.digest)])
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(d.size)}
        self._finish_upload(self._send(ep, "PUT", url, scopes, headers=headers, body=body), d, what)

    def _upload_chunked(self, ep, location, scopes, d: Descriptor, body: _Body, chunk_size: int, what: str) -> None:
        sent = 0
        while sent < d.size:
            chunk = body.read(min(chunk_size, d.size - sent))
            end = sent + len(chunk) - 1
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                       "Content-Range": f"{sent}-{end}"}
            with self._send(ep, "PATCH", location, scopes, headers=headers, body=chunk) as resp:
                if resp.status != 202 or not resp.header("Location"):
                    raise self._status_error(resp, what, op="push")
                rng = (resp.header("Range") or "").strip()
                if rng:
                    try:
                        got_end = int(rng.rsplit("-", 1)[1])
                    except (ValueError, IndexError):
                        got_end = end
                    if got_end != end:
                        raise InvalidArgument(f"{what}: registry holds bytes {rng} after sending up to {end}")
                location = urllib.parse.urljoin(resp.url, resp.header("Location"))
            sent += len(chunk)
        url = _with_query(location, [("digest", d.digest)])
        self._finish_upload(self._send(ep, "PUT", url, scopes, headers={"Content-Length": "0"}), d, what)

    def push_manifest(self, repo: Reference | str, tag: str | None, media_type: str, data: bytes) -> str:
        """PUT a manifest (by ``tag``, or by digest when ``tag`` is None); returns its digest."""
        r = _as_repo(repo)
        if len(data) > self.max_manifest_size:
            raise InvalidArgument(f"manifest is {len(data)} bytes, more than the limit of {self.max_manifest_size}")
        if not media_type:
            raise InvalidArgument("a manifest needs a media type")
        digest = digest_bytes(bytes(data))
        target = tag if tag is not None else digest
        if tag is not None:
            Reference(r.domain, r.path, tag=tag)  # validates the tag
        what = f"manifest {r.name}:{target}" if tag else f"manifest {r.name}@{digest}"
        scopes = [f"repository:{r.path}:pull,push"]

        def attempt(ep: Endpoint) -> str:
            url = ep.url(f"{r.path}/manifests/{target}")
            headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
            with self._send(ep, "PUT", url, scopes, headers=headers, body=bytes(data)) as resp:
                if resp.status not in (200, 201, 202):
                    raise self._status_error(resp, what, op="push", repo=r.familiar_name())
                got = resp.header("Docker-Content-Digest")
                if got and is_digest(got) and got != digest:
                    raise InvalidArgument(f"{what}: registry stored digest {got}, expected {digest}")
            return digest

        result = self._try_endpoints(r.domain, PUSH, attempt)
        self._remember(digest, bytes(data))
        return result

    def ping(self, registry: str) -> None:
        """GET /v2/ of the registry's push endpoint, as dockerd does before a push: a registry that
        cannot be reached fails here, in Go's words for that request (`Get "http://<host>/v2/":
        dial tcp ...`). Any answer will do (a 401 is a challenge, for the requests that follow)."""
        def attempt(ep: Endpoint) -> None:
            with self._send(ep, "GET", self._url(ep, registry, "", PUSH), []):
                pass
        self._try_endpoints(registry, PUSH, attempt)

    def check_login(self, registry: str) -> None:
        """GET /v2/ with the client's credentials (docker login): PermissionDenied if refused."""
        from berth.remotes.auth import PermissionDenied

        def attempt(ep: Endpoint) -> None:
            url = self._url(ep, registry, "", RESOLVE)
            with self._send(ep, "GET", url, []) as resp:
                if resp.status in (401, 403):
                    raise _Abort(PermissionDenied(f"login to {registry} failed: unauthorized: incorrect username or password"))
                if resp.status >= 400:
                    raise self._status_error(resp, f"registry {registry}", op="login")
        self._try_endpoints(registry, RESOLVE, attempt)

    def list_tags(self, repo: Reference | str) -> list[str]:
        """The tags of a repository (first page as the registry sends it; follows Link pages)."""
        r = _as_repo(repo)
        scopes = [f"repository:{r.path}:pull"]
        what = f"repository {r.name}"

        def attempt(ep: Endpoint) -> list[str]:
            url = self._url(ep, r.domain, f"{r.path}/tags/list", RESOLVE)
            tags: list[str] = []
            for _ in range(1000):
                with self._send(ep, "GET", url, scopes, headers={"Accept": "application/json"}) as resp:
                    if resp.status != 200:
                        raise self._status_error(resp, what, repo=r.familiar_name())
                    body = resp.read_limited(16 << 20, f"tag list of {r.name}")
                    link = resp.header("Link")
                try:
                    page = json.loads(body).get("tags") or []
                except (ValueError, AttributeError, UnicodeDecodeError):
                    raise InvalidArgument(f"{what}: invalid tag list") from None
                tags += [t for t in page if isinstance(t, str)]
                if not link or "<" not in link:
                    return tags
                url = urllib.parse.urljoin(url, link[link.index("<") + 1:link.index(">")])
            return tags

        return self._try_endpoints(r.domain, RESOLVE, attempt)


Resolver = RegistryClient
