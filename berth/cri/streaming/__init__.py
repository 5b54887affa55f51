"""The CRI streaming server: the URLs that Exec, Attach and PortForward answer point here.

As kubelet's (and containerd's) streaming server: a request is cached under a one-time random
token (valid for a minute, at most 1,000 waiting), the URL is http://<address>/<verb>/<token>,
and the client upgrades that HTTP request to SPDY/3.1 (remotecommand v1-v4 for exec and
attach, portforward.k8s.io for port forwarding). The work is done by a StreamBackend
(berth.cri.stream_backend) over berth's shims and network namespaces.

Runs on berthd's asyncio loop; each upgraded connection is served by the protocol modules
(spdy, remotecommand, portforward) in this package.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email.utils
import logging
import secrets
import threading
import time

from berth.errors import InvalidArgument, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from typing import Any, Awaitable, Callable, Iterable

    from berth.cri.stream_backend import StreamBackend, _ShimSession
    from berth.cri.streaming import spdy, websocket

    Headers = dict[str, list[str]]  # lower-case name -> values
    Request = dict[str, Any]  # what a URL's token stands for (exec_url, attach_url, portforward_url)

log = logging.getLogger("berthd.streaming")

TOKEN_TTL = 60.0  # seconds, as kubelet's cacheTTL
MAX_IN_FLIGHT = 1000
STREAM_CREATION_TIMEOUT = 30.0  # kubelet's DefaultStreamCreationTimeout
STREAM_IDLE_TIMEOUT = 4 * 3600.0  # containerd's default stream_idle_timeout
MAX_REQUEST_HEAD = 64 * 1024


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"streaming server address {address!r}: expected HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class StreamingServer:
    def __init__(self, address: str = "127.0.0.1:0", backend: StreamBackend | None = None, *,
                 token_ttl: float = TOKEN_TTL, stream_creation_timeout: float = STREAM_CREATION_TIMEOUT,
                 stream_idle_timeout: float = STREAM_IDLE_TIMEOUT) -> None:
        self.host, self.port = _split_address(address)
        self.backend: StreamBackend = backend  # type: ignore[assignment]  # given by every caller that serves
        self.token_ttl = token_ttl
        self.creation_timeout = stream_creation_timeout
        self.idle_timeout = stream_idle_timeout
        self._cache: collections.OrderedDict[str, tuple[float, str, Request]] = collections.OrderedDict()  # token -> (expiry, kind, request)
        self._lock = threading.Lock()  # URLs are made in the CRI's gRPC threads, consumed on the loop
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_REQUEST_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            if self._conns:
                await asyncio.wait(list(self._conns), timeout=5)
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
            self._server = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- URLs ---

    def exec_url(self, container_id: str, cmd: list, tty: bool, stdin: bool, stdout: bool, stderr: bool) -> str:
        if not container_id:
            raise InvalidArgument("missing required container_id")
        if tty and stderr:
            raise InvalidArgument("tty and stderr cannot both be true")
        if not (stdin or stdout or stderr):
            raise InvalidArgument("one of stdin, stdout, or stderr must be set")
        if not cmd:
            raise InvalidArgument("cmd must not be empty")
        req = {"container_id": container_id, "cmd": list(cmd), "tty": bool(tty), "stdin": bool(stdin),
               "stdout": bool(stdout), "stderr": bool(stderr)}
        return f"{self.base_url}/exec/{self._insert('exec', req)}"

    def attach_url(self, container_id: str, tty: bool, stdin: bool, stdout: bool, stderr: bool) -> str:
        if not container_id:
            raise InvalidArgument("missing required container_id")
        if tty and stderr:
            raise InvalidArgument("tty and stderr cannot both be true")
        if not (stdin or stdout or stderr):
            raise InvalidArgument("one of stdin, stdout, and stderr must be set")
        req = {"container_id": container_id, "tty": bool(tty), "stdin": bool(stdin), "stdout": bool(stdout),
               "stderr": bool(stderr)}
        return f"{self.base_url}/attach/{self._insert('attach', req)}"

    def portforward_url(self, sandbox_id: str, ports: list) -> str:
        if not sandbox_id:
            raise InvalidArgument("missing required pod_sandbox_id")
        for p in ports or []:
            if not isinstance(p, int) or not 0 < p <= 65535:
                raise InvalidArgument(f"invalid port {p}")
        req = {"sandbox_id": sandbox_id, "ports": list(ports or [])}
        return f"{self.base_url}/portforward/{self._insert('portforward', req)}"

    def _insert(self, kind: str, req: Request) -> str:
        with self._lock:
            return self._insert_locked(kind, req)

    def _insert_locked(self, kind: str, req: Request) -> str:
        now = time.monotonic()
        while self._cache:  # drop the expired ones (oldest first)
            token, (expiry, _, _) = next(iter(self._cache.items()))
            if expiry > now:
                break
            del self._cache[token]
        if len(self._cache) >= MAX_IN_FLIGHT:
            raise Unavailable("maximum number of in-flight requests exceeded")
        for _ in range(10):
            token = base64.urlsafe_b64encode(secrets.token_bytes(6)).decode().rstrip("=")[:8]
            if token not in self._cache:
                break
        else:
            raise Unavailable("failed to generate unique token")
        self._cache[token] = (now + self.token_ttl, kind, req)
        return token

    def _consume(self, kind: str, token: str) -> Request | None:
        with self._lock:
            entry = self._cache.pop(token, None)
        if entry is None:
            return None
        expiry, k, req = entry
        if k != kind or time.monotonic() > expiry:
            return None
        return req

    # --- HTTP ---

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task: asyncio.Task[Any] = asyncio.current_task()  # type: ignore[assignment]  # in a task
        self._conns.add(task)
        try:
            await self._serve_http(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("streaming connection")
        finally:
            self._conns.discard(task)
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        except asyncio.TimeoutError:
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            await _respond(writer, 400, "malformed HTTP request\n")
            return
        headers: Headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        path = target.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if method not in ("GET", "POST") or len(parts) != 2 or parts[0] not in ("exec", "attach", "portforward"):
            await _respond(writer, 404, "404 page not found\n")
            return
        kind, token = parts
        req = self._consume(kind, token)
        if req is None:
            await _respond(writer, 404, "404 page not found\n")
            return
        await self._upgrade(kind, req, headers, reader, writer)

    async def _upgrade(self, kind: str, req: Request, headers: Headers, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        from berth.cri.streaming import websocket
        if websocket.is_websocket(headers):
            await self._websocket(kind, req, headers, reader, writer)
            return
        await self._spdy(kind, req, headers, reader, writer)

    def _watch(self, conn: spdy.Connection | websocket.Connection) -> asyncio.Future[None]:
        """Close a connection on which nothing moved for stream_idle_timeout (kubelet's idle
        timeout counts frames both ways)."""
        async def watch() -> None:
            while not conn.closed:
                idle = time.monotonic() - conn.last_activity
                if idle >= self.idle_timeout:
                    log.info("streaming: closing a connection idle for %.0fs", idle)
                    await conn.close(reset_streams=True)
                    return
                await asyncio.sleep(min(self.idle_timeout - idle + 0.05, 60))
        return asyncio.ensure_future(watch())

    async def _spdy(self, kind: str, req: Request, headers: Headers, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        from berth.cri.streaming import portforward, remotecommand, spdy
        supported = portforward.PROTOCOLS if kind == "portforward" else remotecommand.PROTOCOLS
        offered = [p.strip() for v in headers.get("x-stream-protocol-version", []) for p in v.split(",") if p.strip()]
        if not offered:
            await _respond(writer, 400, "unable to upgrade: X-Stream-Protocol-Version is required\n")
            return
        protocol = next((p for p in offered if p in supported), "")
        if not protocol:
            await _respond(writer, 403, f"unable to upgrade: unable to negotiate protocol: client supports "
                                        f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]\n",
                           [("X-Accepted-Stream-Protocol-Versions", p) for p in supported])
            return
        connection = ",".join(headers.get("connection", [])).lower()
        upgrade = ",".join(headers.get("upgrade", [])).lower()
        if "upgrade" not in connection or "spdy/3.1" not in upgrade:
            await _respond(writer, 400, "unable to upgrade: missing upgrade headers in request\n")
            return
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      f"X-Stream-Protocol-Version: {protocol}\r\nDate: {email.utils.formatdate(usegmt=True)}"
                      "\r\n\r\n").encode())
        if kind == "portforward":
            sandbox = req["sandbox_id"]
            handler = portforward.Handler(sandbox, lambda port: self.backend.port_forward(sandbox, port),
                                          self.creation_timeout)
            conn = spdy.Connection(reader, writer, handler.on_stream)
            watch = self._watch(conn)
            try:
                await portforward.run(conn, handler)
            finally:
                watch.cancel()
            return
        opts = _options(kind, req)
        streams = remotecommand.Streams(remotecommand.expected_streams(protocol, opts))
        conn = spdy.Connection(reader, writer, streams.on_stream)
        watch = self._watch(conn)
        try:
            await remotecommand.run(conn, protocol, opts, streams, self._starter(kind, req, opts),
                                    self.creation_timeout)
        finally:
            watch.cancel()

    def _starter(self, kind: str, req: Request,
                 opts: dict[str, Any]) -> Callable[[tuple[int, int] | None], Awaitable[_ShimSession]]:
        cid = req["container_id"]
        if kind == "exec":
            async def start(size: tuple[int, int] | None = None) -> _ShimSession:
                return await self.backend.exec(cid, req["cmd"], tty=opts["tty"], stdin=opts["stdin"],
                                               stdout=opts["stdout"], stderr=opts["stderr"], size=size)
        else:
            async def start(size: tuple[int, int] | None = None) -> _ShimSession:
                return await self.backend.attach(cid, tty=opts["tty"], stdin=opts["stdin"], stdout=opts["stdout"],
                                                 stderr=opts["stderr"])
        return start

    async def _websocket(self, kind: str, req: Request, headers: Headers, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """kubelet's websocket forms (wsstream): channels instead of streams."""
        from berth.cri.streaming import portforward, remotecommand, websocket
        supported = websocket.PORTFORWARD if kind == "portforward" else websocket.REMOTECOMMAND
        protocol = websocket.negotiate(headers, supported)
        if protocol is None or (headers.get("sec-websocket-version") or [""])[0].strip() != "13" \
                or not headers.get("sec-websocket-key"):
            await _respond(writer, 403 if protocol is None else 400,
                           "unable to upgrade websocket connection: requested protocol(s) are not supported\n"
                           if protocol is None else "unable to upgrade websocket connection: bad handshake\n")
            return
        writer.write(websocket.accept_response(headers, protocol))
        conn = websocket.Connection(reader, writer, binary=supported[protocol],
                                    close_signal=protocol == "v5.channel.k8s.io")
        watch = self._watch(conn)
        try:
            await self._websocket_run(kind, req, conn, protocol)
        finally:
            watch.cancel()

    async def _websocket_run(self, kind: str, req: Request, conn: websocket.Connection, protocol: str) -> None:
        from berth.cri.streaming import portforward, remotecommand
        if kind == "portforward":
            ports = req["ports"]
            sandbox = req["sandbox_id"]
            handler = portforward.Handler(sandbox, lambda port: self.backend.port_forward(sandbox, port),
                                          self.creation_timeout)
            pairs = [(conn.add(True, True), conn.add(False, True)) for _ in ports]
            await portforward.run_channels(conn, handler, list(zip(ports, pairs)))
            return
        opts = _options(kind, req)
        chans = [conn.add(opts["stdin"], False), conn.add(False, opts["stdout"]), conn.add(False, opts["stderr"]),
                 conn.add(False, True), conn.add(True, False)]
        streams = remotecommand.Streams(0)
        streams.by_type = {"error": chans[3]}
        for name, ch, on in (("stdin", chans[0], opts["stdin"]), ("stdout", chans[1], opts["stdout"]),
                             ("stderr", chans[2], opts["stderr"]), ("resize", chans[4], opts["tty"])):
            if on:
                streams.by_type[name] = ch
        streams.complete.set()
        # kubelet's "connected" signal: an empty message on the lowest writable channel
        first = chans[1] if opts["stdout"] else chans[2] if opts["stderr"] else chans[3]
        await first.write(b"")
        status_protocol = remotecommand.V4 if protocol.startswith(("v4.", "v5.")) else remotecommand.V1
        await remotecommand.run(conn, status_protocol, opts, streams, self._starter(kind, req, opts),
                                self.creation_timeout)


def _options(kind: str, req: Request) -> dict[str, Any]:
    opts = {"kind": kind, "stdin": req["stdin"], "stdout": req["stdout"], "stderr": req["stderr"], "tty": req["tty"]}
    if opts["tty"]:
        opts["stderr"] = False
    return opts


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: str,
                   extra: Iterable[tuple[str, str]] = ()) -> None:
    data = body.encode()
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: text/plain; charset=utf-8",
            "X-Content-Type-Options: nosniff", f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Length: {len(data)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in extra]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    await writer.drain()
