"""A small HTTP/1.1 client over unix and TCP sockets (TLS optional).

http.client costs ~30 ms to import (email, ssl); the CLI starts for every command, so this
speaks just the HTTP it needs: requests with a body or a streamed body, responses with
Content-Length, chunked or close-delimited bodies, and the raw socket after a 101 upgrade.
"""

import _socket
import io

from berth.errors import (BerthError, FailedPrecondition, InvalidArgument, NotFound, SystemError_,
                          Unavailable)

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator  # noqa: F401
    from typing import Any  # noqa: F401


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quote(s, safe=""):
    # type: (object, str) -> str
    """Percent-encode like urllib.parse.quote (urllib.parse costs ~2 ms to import: re)."""
    keep = _UNRESERVED | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in str(s).encode())


def urlencode(pairs):
    # type: (Iterable[tuple[str, Any]]) -> str
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)


class TLSConfig:
    def __init__(self, ca=None, cert=None, key=None, verify=True):
        # type: (str | None, str | None, str | None, bool) -> None
        self.ca, self.cert, self.key, self.verify = ca, cert, key, verify

    def context(self):
        # type: () -> Any
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca) if self.ca else ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def parse_address(addr):
    # type: (str) -> tuple[str, Any]
    if addr.startswith("unix://"):
        return ("unix", addr[len("unix://"):])
    if addr.startswith("tcp://") or addr.startswith("http://") or addr.startswith("https://"):
        rest = addr.split("://", 1)[1].rstrip("/")
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise Unavailable(f"invalid daemon address {addr!r}: expected tcp://HOST:PORT")
        return ("tcp", host.strip("[]"), int(port))
    if addr.startswith("/"):
        return ("unix", addr)
    raise Unavailable(f"invalid daemon address {addr!r}: expected unix:///PATH or tcp://HOST:PORT")


class Response:
    def __init__(self, sock, fileobj, method=None):
        # type: (Any, Any, str | None) -> None
        self.sock = sock
        self.f = fileobj
        line = self.f.readline(65537)
        if not line:
            raise Unavailable("the daemon closed the connection without answering")
        parts = line.decode("latin-1").split(" ", 2)
        self.status = int(parts[1])
        self.reason = parts[2].strip() if len(parts) > 2 else ""
        self.headers = {}
        while True:
            h = self.f.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        cl = self.headers.get("content-length")
        self._left = int(cl) if cl is not None and not self._chunked else None
        self._chunk_left = 0
        self._done = self.status in (101, 204, 304) or method == "HEAD"  # no body, whatever the headers say

    def read_some(self, n=65536):
        # type: (int) -> bytes
        """Up to n bytes of the body; b"" at its end. A body cut short (EOF before the last
        chunk, or before Content-Length bytes) raises Unavailable("unexpected EOF"), as Go's
        client reports it: a truncated stream is never taken for a complete one."""
        if self._done:
            return b""
        try:
            return self._read_some(n)
        except (ConnectionError, TimeoutError) as e:
            self._done = True
            raise Unavailable(f"unexpected EOF: {e.strerror or e}") from None
        except ValueError:  # a chunk size line that is not hex
            self._done = True
            raise Unavailable("unexpected EOF: malformed chunked encoding") from None

    def _short(self):
        # type: () -> bool
        self._done = True
        raise Unavailable("unexpected EOF")

    def _read_some(self, n):
        # type: (int) -> bytes
        if self._chunked:
            if self._chunk_left == 0:
                size_line = self.f.readline(65537)
                if not size_line:
                    self._short()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.f.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    self._done = True
                    return b""
                self._chunk_left = size
            data = self.f.read1(min(n, self._chunk_left))
            if not data:
                self._short()
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                if not self.f.readline(3):
                    self._short()
            return data
        if self._left is not None:
            if self._left == 0:
                self._done = True
                return b""
            data = self.f.read1(min(n, self._left))
            if not data:
                self._short()
            self._left -= len(data)
            return data
        data = self.f.read1(n)
        if not data:
            self._done = True
        return data

    def read(self):
        # type: () -> bytes
        out = []
        while True:
            d = self.read_some()
            if not d:
                return b"".join(out)
            out.append(d)

    def json(self):
        # type: () -> Any
        from berth import fastjson
        data = self.read()
        return fastjson.loads(data) if data else None

    def iter_lines(self):
        # type: () -> Iterator[bytes]
        buf = b""
        while True:
            d = self.read_some()
            if not d:
                if buf.strip():
                    yield buf
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield line

    def iter_json(self):
        # type: () -> Iterator[Any]
        from berth import fastjson
        for line in self.iter_lines():
            yield fastjson.loads(line)

    def close(self):
        # type: () -> None
        try:
            self.sock.close()
        except OSError:
            pass


class _SockReader(io.RawIOBase):
    """The reading side of a (plain, _socket or TLS) socket, for io.BufferedReader."""

    def __init__(self, sock):
        # type: (Any) -> None
        self.sock = sock

    def readable(self):
        # type: () -> bool
        return True

    def readinto(self, b):
        # type: (bytearray | memoryview) -> int
        return self.sock.recv_into(b)


class Transport:
    def __init__(self, address, tls=None, timeout=None):
        # type: (str, TLSConfig | None, float | None) -> None
        self.address = address
        self.addr = parse_address(address)
        self.tls = tls
        self.timeout = timeout

    def connect(self):
        # type: () -> Any
        try:
            if self.addr[0] == "unix":
                # _socket: the socket module costs the CLI ~5 ms of imports (enum, selectors)
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(self.addr[1])
            else:
                import socket
                s = socket.create_connection((self.addr[1], self.addr[2]), timeout=self.timeout)
                if self.tls:
                    s = self.tls.context().wrap_socket(s, server_hostname=self.addr[1])
        except FileNotFoundError:
            raise Unavailable(f"cannot connect to berthd at {self.address}: no such socket; is berthd running?") from None
        except ConnectionRefusedError:
            raise Unavailable(f"cannot connect to berthd at {self.address}: connection refused; is berthd running?") from None
        except OSError as e:
            raise Unavailable(f"cannot connect to berthd at {self.address}: {e.strerror or e}") from None
        return s

    def request(self, method, path, params=None, body=None, headers=None, upgrade=False):
        # type: (str, str, dict[str, Any] | None, Any | None, dict[str, str] | None, bool) -> Response
        """Send a request; body may be bytes or an iterable of bytes (sent chunked)."""
        if params:
            items = [(k, v) for k, v in params.items() if v is not None]
            if items:
                path += "?" + urlencode([(k, str(v).lower() if isinstance(v, bool) else v) for k, v in items])
        s = self.connect()
        host = "berth" if self.addr[0] == "unix" else f"{self.addr[1]}:{self.addr[2]}"
        h = {"Host": host, "User-Agent": "berth-cli"}
        if upgrade:
            h.update({"Connection": "Upgrade", "Upgrade": "tcp"})
        else:
            h["Connection"] = "close"
        h.update(headers or {})
        chunks = None
        if body is None:
            if method in ("POST", "PUT"):
                h["Content-Length"] = "0"
        elif isinstance(body, (bytes, bytearray)):
            h["Content-Length"] = str(len(body))
        else:
            h["Transfer-Encoding"] = "chunked"
            chunks = body
        head = f"{method} {quote(path, safe='/?=&%:@,+;')} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        try:
            s.sendall(head.encode("latin-1"))
            if isinstance(body, (bytes, bytearray)):
                s.sendall(body)
            elif chunks is not None:
                for c in chunks:
                    if c:
                        s.sendall(b"%x\r\n" % len(c) + c + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            return Response(s, io.BufferedReader(_SockReader(s)), method)
        except (BrokenPipeError, ConnectionResetError) as e:
            s.close()
            raise Unavailable(f"connection to berthd at {self.address} lost: {e.strerror}") from None


def error_from(status: int, message: str) -> BerthError:
    """The error kind of an HTTP status (the message is the daemon's)."""
    cls = {400: InvalidArgument, 404: NotFound, 409: FailedPrecondition, 503: Unavailable}.get(status)
    if cls is None:
        cls = SystemError_ if status >= 500 else BerthError
    e = cls(message)
    e.http_status = status
    return e
