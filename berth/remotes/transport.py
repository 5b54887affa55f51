"""HTTP(S) for the registry client: pooled keep-alive connections, TLS settings, timeouts.

Synchronous and thread-safe: each request checks a connection out of a small
per-(scheme, host, TLS settings) pool and puts it back once its response has
been read to the end. A reused connection that the server has closed is
replaced transparently when the request can be sent again. Endpoints marked
``http_fallback`` (insecure registries) are tried in HTTPS first; if the TLS
connection cannot be made, the host is remembered as plain HTTP for the life
of the transport. Failures to connect or to read are :class:`ConnectionFailed`
(an Unavailable) with a one-line reason.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import BinaryIO, Self

from berth.errors import InvalidArgument, Unavailable

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 15.0
_BLOCKSIZE = 1 << 16
_MAX_IDLE_PER_KEY = 8


class ConnectionFailed(Unavailable):
    """The connection could not be made or broke down; ``sent`` if the request went out.
    A dial that failed also keeps where it went (``base``: scheme://host) and Go's words for the
    dial alone (``dial``: `dial tcp <addr>: connect: ...`), for a caller that names another
    request (dockerd names its /v2/ ping)."""

    def __init__(self, message: str, *, sent: bool = False, base: str = "", dial: str = ""):
        super().__init__(message)
        self.sent = sent
        self.base = base
        self.dial = dial


@dataclass(frozen=True)
class TLSOptions:
    skip_verify: bool = False
    ca_files: tuple[str, ...] = ()
    client_certs: tuple[tuple[str, str], ...] = ()


DEFAULT_TLS = TLSOptions()


def describe_error(e: BaseException) -> str:
    """A short, one-line reason for a network error."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {e.verify_message or e.reason}"
    if isinstance(e, ssl.SSLError):
        return f"TLS error: {e.reason or e}"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host: {e.strerror or e}"
    if isinstance(e, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return "connection closed by the server"
    if isinstance(e, http.client.HTTPException):
        return f"bad HTTP response: {type(e).__name__}"
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _dial_error(method: str, url: str, u: urllib.parse.SplitResult, e: BaseException) -> ConnectionFailed:
    """A connection that could not be made, as Go's HTTP client says it (the words containerd and
    dockerd pass on): `Head "<url>": dial tcp <ip:port>: connect: connection refused`, the address
    dialled (a name's first IPv4 address, as Go's dialer tries it first); other failures (a name
    that does not resolve, TLS) in words of their own after the host."""
    port = u.port or (443 if u.scheme == "https" else 80)
    addr = f"{_dialled(u.hostname or '', port)}:{port}" if u.hostname else u.netloc
    dial = ""
    if isinstance(e, (socket.timeout, TimeoutError)):
        dial = f"dial tcp {addr}: i/o timeout"
    elif isinstance(e, socket.gaierror) and e.errno in _NO_SUCH_HOST and u.hostname:
        name = u.netloc.rpartition("@")[2]  # (as written: hostname is lowered)
        name = name[1:name.find("]")] if name.startswith("[") else name.partition(":")[0]
        dial = f"dial tcp: lookup {name} on {_nameserver()}: no such host"
    elif isinstance(e, OSError) and not isinstance(e, (socket.gaierror, ssl.SSLError)) and e.errno:
        from berth.goquote import errno_text
        dial = f"dial tcp {addr}: connect: {errno_text(e)}"
    if not dial:
        return ConnectionFailed(f"cannot connect to {u.scheme}://{u.netloc}: {describe_error(e)}")
    return ConnectionFailed(f'{method.capitalize()} "{url}": {dial}', base=f"{u.scheme}://{u.netloc}", dial=dial)


_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _nameserver() -> str:
    """The DNS server Go's resolver names in a failed lookup: resolv.conf's first (port 53)."""
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return f"[{parts[1]}]:53" if ":" in parts[1] else f"{parts[1]}:53"
    except OSError:
        pass
    return "127.0.0.1:53"


def _dialled(host: str, port: int) -> str:
    """The address Go's dialer names for host: an IP as it is ([v6] bracketed), a name's first
    IPv4 address (else its first address); the name itself when it does not resolve now."""
    import ipaddress
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return host
        v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
        if not v4 and not infos:
            return host
        ip = ipaddress.ip_address(v4[0] if v4 else infos[0][4][0])
    return f"[{ip}]" if ip.version == 6 else str(ip)


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, *, connect_timeout: float, read_timeout: float):
        super().__init__(host, timeout=connect_timeout, blocksize=_BLOCKSIZE)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, context: ssl.SSLContext, connect_timeout: float, read_timeout: float):
        super().__init__(host, timeout=connect_timeout, context=context, blocksize=_BLOCKSIZE)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class Response:
    """A response whose body may still be streaming. Close it (or use ``with``)."""

    def __init__(self, transport: Transport, key, conn, resp: http.client.HTTPResponse, url: str, method: str):
        self._transport = transport
        self._key = key
        self._conn = conn
        self._resp = resp
        self.url = url
        self.method = method
        self.status = resp.status
        self.reason = resp.reason
        self.headers = resp.headers

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    @property
    def content_length(self) -> int | None:
        v = self.headers.get("Content-Length")
        if v is None or not v.strip().isdigit():
            return None
        return int(v.strip())

    def read(self, amt: int | None = None) -> bytes:
        """Read body bytes; network failures are ConnectionFailed(sent=True)."""
        try:
            return self._resp.read(amt) if amt is not None else self._resp.read()
        except (OSError, http.client.HTTPException, ValueError) as e:
            self._discard()
            raise ConnectionFailed(f"reading from {self._origin()}: {describe_error(e)}", sent=True) from None

    def read_limited(self, limit: int, what: str) -> bytes:
        """The whole body, refusing more than ``limit`` bytes."""
        cl = self.content_length
        if cl is not None and cl > limit:
            self._discard()
            raise InvalidArgument(f"{what} is {cl} bytes, more than the limit of {limit}")
        chunks, total = [], 0
        while True:
            chunk = self.read(min(_BLOCKSIZE, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                self._discard()
                raise InvalidArgument(f"{what} is more than the limit of {limit} bytes")
        return b"".join(chunks)

    def _origin(self) -> str:
        u = urllib.parse.urlsplit(self.url)
        return f"{u.scheme}://{u.netloc}"

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Give the connection back if the body was read to its end (drain small leftovers)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        resp = self._resp
        try:
            if not resp.isclosed():
                # Small remainders (error bodies) are drained to keep the connection.
                left = resp.length
                if left is not None and left <= _BLOCKSIZE:
                    resp.read()
            reusable = resp.isclosed() and not resp.will_close
        except (OSError, http.client.HTTPException, ValueError):
            reusable = False
        if reusable:
            self._transport._put(self._key, conn)
        else:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten response must not leak its socket
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


def _replayable(body) -> bool:
    if body is None or isinstance(body, (bytes, bytearray, memoryview)):
        return True
    can = getattr(body, "can_rewind", None)
    if callable(can):
        return bool(can())
    return callable(getattr(body, "rewind", None))


def _rewind(body) -> None:
    rewind = getattr(body, "rewind", None)
    if callable(rewind):
        rewind()


class Transport:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 user_agent: str = "berth"):
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._plain_http: set[str] = set()

    # --- TLS -------------------------------------------------------------------

    def ssl_context(self, tls: TLSOptions) -> ssl.SSLContext:
        """An SSLContext for these options, cached while the files are unchanged."""
        stamps = []
        for f in tls.ca_files + tuple(p for pair in tls.client_certs for p in pair if p):
            try:
                st = os.stat(f)
                stamps.append((f, st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((f, None, None))
        key = (tls, tuple(stamps))
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        ctx = ssl.create_default_context()
        try:
            for f in tls.ca_files:
                ctx.load_verify_locations(cafile=f)
            for cert, keyfile in tls.client_certs:
                ctx.load_cert_chain(cert, keyfile or None)
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(f"cannot load TLS files: {describe_error(e)}") from None
        if tls.skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with self._lock:
            self._contexts[key] = ctx
        return ctx

    def is_plain_http(self, host: str) -> bool:
        with self._lock:
            return host in self._plain_http

    # --- pool ------------------------------------------------------------------

    def _get(self, key) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                conns = self._idle.get(key)
                conn = conns.pop() if conns else None
            if conn is None:
                return None
            sock = conn.sock
            if sock is None:
                continue
            try:
                readable, _, _ = select.select([sock], [], [], 0)
            except (OSError, ValueError):
                readable = [sock]
            if readable:  # closed by the peer (or stray bytes): unusable
                conn.close()
                continue
            return conn

    def _put(self, key, conn) -> None:
        with self._lock:
            conns = self._idle.setdefault(key, [])
            if len(conns) < _MAX_IDLE_PER_KEY:
                conns.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for c in conns:
                c.close()

    # --- requests --------------------------------------------------------------

    def request(self, method: str, url: str, *, headers: dict | None = None,
                body: bytes | BinaryIO | None = None, tls: TLSOptions = DEFAULT_TLS,
                connect_timeout: float | None = None, http_fallback: bool = False) -> Response:
        """Send one request and return its response (the body not yet read).

        ``body`` is bytes, None, or a file-like object; set Content-Length in
        ``headers`` for a file. A file body that has a ``rewind()`` method can
        be re-sent on a stale connection.
        """
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise InvalidArgument(f"invalid URL {url!r}")
        if http_fallback and u.scheme == "https" and self.is_plain_http(u.netloc):
            u = u._replace(scheme="http")
            url = urllib.parse.urlunsplit(u)
        try:
            return self._request(method, u, url, headers, body, tls, connect_timeout)
        except ConnectionFailed as e:
            if not (http_fallback and u.scheme == "https" and not e.sent):
                raise
        with self._lock:
            self._plain_http.add(u.netloc)
        u = u._replace(scheme="http")
        return self._request(method, u, urllib.parse.urlunsplit(u), headers, body, tls, connect_timeout)

    def _new_conn(self, u, tls: TLSOptions, connect_timeout: float | None):
        ct = connect_timeout or self.connect_timeout
        if u.scheme == "https":
            return _HTTPSConnection(u.netloc, context=self.ssl_context(tls), connect_timeout=ct,
                                    read_timeout=self.timeout)
        return _HTTPConnection(u.netloc, connect_timeout=ct, read_timeout=self.timeout)

    def _request(self, method, u, url, headers, body, tls, connect_timeout) -> Response:
        key = (u.scheme, u.netloc.lower(), tls if u.scheme == "https" else None)
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        hdrs = {"User-Agent": self.user_agent}
        hdrs.update(headers or {})
        if body is None and method in ("PUT", "POST", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        attempts = 2 if _replayable(body) else 1
        for attempt in range(attempts):
            conn = self._get(key)
            reused = conn is not None
            if conn is None:
                conn = self._new_conn(u, tls, connect_timeout)
                try:
                    conn.connect()
                except (OSError, http.client.HTTPException, ValueError) as e:
                    conn.close()
                    raise _dial_error(method, url, u, e) from None
                except BaseException:
                    conn.close()
                    raise
            try:
                if attempt:
                    _rewind(body)
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as e:
                conn.close()
                if reused and attempt + 1 < attempts and isinstance(
                        e, (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
                    continue  # a stale keep-alive connection: try once more on a new one
                raise ConnectionFailed(f"{method} {u.scheme}://{u.netloc}: {describe_error(e)}", sent=True) from None
            except BaseException:
                conn.close()  # e.g. the body's reader failed: the request is half sent
                raise
            return Response(self, key, conn, resp, url, method)
        raise AssertionError("unreachable")
