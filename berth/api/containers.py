"""Container endpoints of the Docker Engine API."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any, AsyncIterator, Callable, Iterator

from aiohttp import web

from berth.api.app import (Router, api_version, json_body, json_line, json_response, namespace_of, services,
                           stream_headers)
from berth.api.images import _bool, _filters
from berth.errors import BerthError, InvalidArgument
from berth.services import container_ops as ops
from berth.services.containers import check_log_readable
from berth.services.execs import detach_keys

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for the annotations only
    from aiohttp.web_protocol import RequestHandler


async def create(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    ns = namespace_of(request)
    if request.query.get("platform") and not body.get("Platform"):
        body["Platform"] = request.query["platform"]  # docker's CLI sends --platform in the query
    v = api_version(request)
    before_1_44 = v is not None and v < (1, 44)  # (read-only binds were not recursively so before it)
    for m in (body.get("HostConfig") or {}).get("Mounts") or [] if v is not None and v < (1, 45) else []:
        if not isinstance(m, dict):
            continue
        if before_1_44 and m.get("Type") == "bind" and (m.get("BindOptions") or {}).get("ReadOnlyForceRecursive"):
            raise InvalidArgument("BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer")  # dockerd's
        if (m.get("VolumeOptions") or {}).get("Subpath"):
            raise InvalidArgument("VolumeOptions.Subpath needs API v1.45 or newer")
    res = await s.run(s.containers.create, ns, body, request.query.get("name"), ro_nonrecursive=before_1_44)
    return json_response(res, status=201)


async def start(request: web.Request) -> web.Response:
    s = services(request)
    started = await s.run(ops.start, s.containers, namespace_of(request), request.match_info["id"])
    return web.Response(status=204 if started else 304, headers=stream_headers())


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers go out at once (docker calls wait before start); the body when it exits."""
    s = services(request)
    ns = namespace_of(request)
    rec = await s.run(s.containers.get, ns, request.match_info["id"])
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/json"}))
    await resp.prepare(request)
    try:
        code, err = await s.run_wait(s.containers.wait_result, ns, rec.id,
                                     request.query.get("condition") or "not-running",
                                     lambda: request.transport is None or request.transport.is_closing())
        result = {"StatusCode": code, "Error": {"Message": err} if err else None}
    except BerthError as e:  # the headers are out: the error goes in the body, as docker's does
        result = {"StatusCode": getattr(e, "status_code", -1), "Error": {"Message": e.message}}
    try:
        await resp.write(json_line(result))
        await resp.write_eof()
    except ConnectionError:  # the client went away (docker's CLI cancels its wait after a failed start)
        pass
    return resp


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    ns = namespace_of(request)
    res = await s.run(s.containers.inspect, ns, request.match_info["id"])
    if _bool(request, "size"):  # inspect --size
        res = (await s.run(ops.with_sizes, s.containers, ns, [res]))[0]
    v = api_version(request)
    if v is not None and v < (1, 45):
        # before API 1.45 a user-defined network's Aliases carry the short container ID and the
        # hostname too, as dockerd 20.10's (since then in DNSNames alone)
        extra = [res["Id"][:12], ((res.get("Config") or {}).get("Hostname") or "")]
        for ep in ((res.get("NetworkSettings") or {}).get("Networks") or {}).values():
            if ep.get("DNSNames"):
                aliases = list(ep.get("Aliases") or [])
                ep["Aliases"] = aliases + [a for i, a in enumerate(extra) if a and a not in aliases + extra[:i]]
    _without_dns_names([res], v)
    return json_response(res)


def _without_dns_names(items: list[dict], v: tuple[int, int] | None) -> None:
    """An endpoint's DNSNames came with API 1.44: not shown to clients of an older version."""
    if v is None or v >= (1, 44):
        return
    for item in items:
        for ep in ((item.get("NetworkSettings") or {}).get("Networks") or {}).values():
            ep.pop("DNSNames", None)


async def list_(request: web.Request) -> web.Response:
    s = services(request)
    ns = namespace_of(request)
    limit = int(request.query.get("limit") or -1)
    items = await s.run(s.containers.list, ns, _bool(request, "all"), _filters(request), limit)
    if _bool(request, "size"):  # ps -s
        items = await s.run(ops.with_sizes, s.containers, ns, items)
    _without_dns_names(items, api_version(request))
    return json_response(items)


async def remove(request: web.Request) -> web.Response:
    s = services(request)
    if _bool(request, "link"):  # docker rm --link NAME without a parent/alias
        from berth.api.container_extra import remove_default_link
        return await remove_default_link(request)
    later: list = []
    try:
        await s.run(s.containers.remove, namespace_of(request), request.match_info["id"], _bool(request, "force"),
                    _bool(request, "v"), exclusive=True, destroy_later=later)
        # the answer, then the destroy event: the docker CLI's --rm of API < 1.25 removes the
        # container itself and ends at the event, cancelling a request not answered by then
        resp = web.Response(status=204, headers=stream_headers())
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    finally:
        for publish in later:
            publish()


async def stop(request: web.Request) -> web.Response:
    s = services(request)
    t = request.query.get("t")
    stopped = await s.run(s.containers.stop, namespace_of(request), request.match_info["id"],
                          int(t) if t not in (None, "") else None, request.query.get("signal") or None)
    return web.Response(status=204 if stopped else 304, headers=stream_headers())


async def kill(request: web.Request) -> web.Response:
    s = services(request)
    await s.run(s.containers.kill, namespace_of(request), request.match_info["id"],
                request.query.get("signal") or "KILL")
    return web.Response(status=204, headers=stream_headers())


async def logs(request: web.Request) -> web.StreamResponse:
    s = services(request)
    ns = namespace_of(request)
    if not (_bool(request, "stdout") or _bool(request, "stderr")):  # dockerd's, before the container
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    rec = await s.run(s.containers.get, ns, request.match_info["id"])
    q = request.query
    try:  # dockerd's: a tail that is not a number, or a negative one, is all of it
        tail = int(q.get("tail", "all"))
    except ValueError:
        tail = None
    if tail is not None and tail < 0:
        tail = None
    since = float(q.get("since") or 0)
    until = float(q.get("until") or 0)
    spec = rec.spec_json() or {}
    check_log_readable(spec)  # before the headers
    tty = bool(spec.get("Tty"))
    gen = s.containers.logs(ns, rec.id, _bool(request, "stdout"), _bool(request, "stderr"), _bool(request, "follow"),
                            tail, since, until, _bool(request, "timestamps"), ticks=True,
                            details=_bool(request, "details"))
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{
        "Content-Type": "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"}))
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    left: list[bool] = []

    def gone() -> bool:  # the client left (a follow's thread stops at its next wait: 50 ms)
        return bool(left) or request.transport is None or request.transport.is_closing()
    try:
        while True:
            items, ended = await loop.run_in_executor(s.waits, _log_batch, gen, gone)
            if items:
                await resp.write(_framed(items, tty))
            if ended:
                break
    finally:
        left.append(True)
    await resp.write_eof()
    return resp


def _framed(items: list[tuple[str, bytes]], tty: bool) -> bytes:
    """Log entries as a container's stream carries them: raw with a TTY, else multiplexed
    (docker's stdcopy frames: stream 1 or 2, then the length)."""
    if tty:
        return b"".join(data for _, data in items)
    return b"".join(struct.pack(">BxxxI", 1 if src == "stdout" else 2, len(data)) + data for src, data in items)


def _log_batch(gen: Iterator[tuple[str, bytes] | None], gone: Callable[[], bool],
               limit: int = 1 << 16) -> tuple[list[tuple[str, bytes]], bool]:
    """The log's next entries, about limit bytes of them (one hand-over between threads per
    batch, not per line: a log of a million lines is seconds, not minutes), fewer when the
    follow has caught up; and whether the log ended (or the client is gone)."""
    items: list[tuple[str, bytes]] = []
    size = 0
    for item in gen:
        if item is None:  # caught up: what is here goes now (nothing yet: wait on for it)
            if items:
                return items, False
            if gone():
                return items, True
            continue
        items.append(item)
        size += len(item[1]) + 8
        if size >= limit:
            return items, False
    return items, True


class _Raw(asyncio.Protocol):
    """Takes over a hijacked HTTP connection: bytes in, and a half-close that keeps output flowing."""

    HIGH = 1 << 20  # bytes waiting past which the client is not read (back-pressure)

    def __init__(self, handler: RequestHandler[Any] | None = None) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.handler = handler  # aiohttp's RequestHandler: told when the connection goes
        self.transport: asyncio.Transport | None = None
        self.waiting = 0
        self.paused = False
        self.writable: asyncio.Future[None] | None = None  # while the client's side is full

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark for the client: the copy from the
        shim waits (drain), and the shim holds the process's output, as a full pipe would."""
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        w, self.writable = self.writable, None
        if w is not None and not w.done():
            w.set_result(None)

    async def drain(self) -> None:
        if self.writable is not None:
            await self.writable

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data_received(data)
        return False, b""

    async def get(self) -> bytes | None:
        """The client's next bytes (b"" at its half-close, None when it is gone)."""
        data = await self.queue.get()
        if data:
            self.waiting -= len(data)
            if self.paused and self.waiting <= self.HIGH:
                self.paused = False
                try:
                    self.transport.resume_reading()  # type: ignore[union-attr]  # None: caught below
                except (AttributeError, RuntimeError):
                    pass
        return data

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(data)
        self.waiting += len(data)
        if not self.paused and self.waiting > self.HIGH and self.transport is not None:
            self.paused = True  # the shim takes what its process reads: the client waits
            try:
                self.transport.pause_reading()
            except (AttributeError, RuntimeError):
                pass

    def eof_received(self) -> bool:
        self.queue.put_nowait(b"")
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.queue.put_nowait(None)
        self.resume_writing()  # nothing more will be written: whoever waits goes on (and stops)
        # aiohttp no longer gets transport events: without this its server keeps the handler
        # (and its parser, request and this protocol) in its connection table for ever
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(exc)


def hijack(request: web.Request) -> tuple[asyncio.Transport, _Raw]:
    """Take the connection over from aiohttp (docker's hijack): answer 101 UPGRADED (or 200 to a
    client that did not ask to upgrade) and return (transport, _Raw) for the raw byte stream."""
    transport = request.transport
    raw = _Raw(request.protocol)
    raw.transport = transport
    request.protocol.set_parser(raw)  # bytes aiohttp already read after the headers
    transport.set_protocol(raw)  # everything after that, and a half-close
    if request.headers.get("Upgrade", "").lower() == "tcp" or "upgrade" in request.headers.get("Connection", "").lower():
        transport.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                        b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    else:
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
    return transport, raw


def _escape(buf: bytes, keys: bytes) -> tuple[bytes, bool, bytes]:
    """docker's escape proxy: (bytes to pass on, whether the keys were typed, bytes held back
    as a possible start of them)."""
    out = bytearray()
    i = 0
    while i < len(buf):
        m = 0
        while m < len(keys) and i + m < len(buf) and buf[i + m] == keys[m]:
            m += 1
        if m == len(keys):
            return bytes(out), True, b""
        if m and i + m == len(buf):
            return bytes(out), False, buf[i:]
        out.append(buf[i])
        i += 1
    return bytes(out), False, b""


async def pipe(transport: asyncio.Transport, raw: _Raw, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               stdin: bool = True, detach: bytes | None = None) -> None:
    """Copy the shim's stream to the client and (with stdin) the client's bytes to the shim; the
    client's EOF half-closes toward the shim, whose output keeps flowing until it ends. With
    ``detach`` (the detach keys of a TTY's stdin), typing them ends the stream and leaves the
    process running."""
    async def client_to_shim() -> None:
        held = b""
        while True:
            data = await raw.get()
            if data is None:  # the client is gone (not a half-close): nobody reads the output
                writer.close()
                return
            if not data:
                if stdin and writer.can_write_eof():
                    writer.write_eof()
                return
            if detach:
                data, detached, held = _escape(held + data, detach)
                if detached:
                    if data and stdin:
                        writer.write(data)
                    transport.close()  # the shim sees its client go; a TTY's processes stay
                    writer.close()
                    return
            if stdin and data:
                writer.write(data)
                await writer.drain()

    pump = asyncio.ensure_future(client_to_shim())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            transport.write(data)
            await raw.drain()  # a client that reads slowly slows its stream, not berthd's memory
    except (ConnectionError, OSError):
        pass
    finally:
        pump.cancel()
        writer.close()
        transport.close()


async def attach(request: web.Request) -> web.Response:
    """POST /containers/{id}/attach: answer 101 and pipe the connection to the shim's attach.
    Docker attaches before it starts: the service waits for the start (which then holds the
    process until this attach is connected, so no output is lost). As dockerd's: logs=1 sends
    what the container's log holds first; without stream=1 the answer ends there (no live
    stream: the docker CLI and docker-py's attach_socket ask for it, docker-py's
    attach(stream=False) does not)."""
    s = services(request)
    ns = namespace_of(request)
    rec = await s.run(s.containers.get, ns, request.match_info["id"])
    s.containers.check_attachable(ns, rec, request.match_info["id"])
    want = {"stdin": _bool(request, "stdin"), "stdout": _bool(request, "stdout"), "stderr": _bool(request, "stderr")}
    logs, live = _bool(request, "logs"), _bool(request, "stream")
    spec = rec.spec_json() or {}
    if logs:
        check_log_readable(spec)  # before the answer's headers: an error the client reads
    given = detach_keys(request.query.get("detachKeys"))
    keys = given if want["stdin"] and spec.get("Tty") else None  # docker's: a TTY's only
    if live:
        s.containers.expect_attach(rec.id)  # before the 101: the client's start may follow at once
    announced = live  # until containers.attach takes it over
    try:
        if live and not logs:
            # the stream is connected, or known to wait for a start, before the answer: a client
            # that looks at the container after it finds it as the attach did (running, or not:
            # a run that ended meanwhile is then waited past, and the client may start it again)
            announced = False
            res = await _attach_before_answer(s, ns, rec.id, want)
            s.containers.attached(ns, rec)
            transport, raw = hijack(request)
            if not isinstance(res, _Pending):
                # the stream's bytes must not reach the client with the answer's headers (docker-py
                # reads them under its HTTP reader, and loses what comes in the same read)
                try:
                    await asyncio.sleep(0.02)
                except BaseException:
                    if res is not None:
                        res[0].close()
                    raise
        else:
            transport, raw = hijack(request)
            if logs and (want["stdout"] or want["stderr"]):
                await _replay_log(s, ns, rec.id, want["stdout"], want["stderr"], bool(spec.get("Tty")), transport, raw)
            s.containers.attached(ns, rec)
            if not live:
                transport.close()
                return web.Response()
            announced = False
            res = await s.run_wait(s.containers.attach, ns, rec.id, want["stdin"], want["stdout"], want["stderr"])
    finally:
        if announced:  # no attach to come (the client left): a start that holds its process goes on
            s.containers.attach_done(rec.id)
    if isinstance(res, _Pending):
        try:
            res = await res.task
        except BaseException:
            res.task.add_done_callback(_close_result)
            raise
    if res is None:
        transport.close()
        return web.Response()
    sock, _ = res
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    await pipe(transport, raw, reader, writer, stdin=want["stdin"], detach=keys)
    return web.Response()


class _Pending:
    """The answer of an attach that waits for a start: what it waits on after the 101."""

    def __init__(self, task: asyncio.Future) -> None:
        self.task = task


async def _attach_before_answer(s: Any, ns: str, cid: str, want: dict[str, bool]) -> Any:
    """containers.attach until it is connected (its result) or waits for a start (then the
    answer goes out, and the attach's result is awaited after it: resolved by _Pending)."""
    loop = asyncio.get_running_loop()
    decided = asyncio.Event()
    task = asyncio.ensure_future(s.run_wait(s.containers.attach, ns, cid, want["stdin"], want["stdout"],
                                            want["stderr"], decided=lambda: loop.call_soon_threadsafe(decided.set)))
    waiter = asyncio.ensure_future(decided.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the client left: a stream connected after is closed
        task.add_done_callback(_close_result)
        raise
    finally:
        waiter.cancel()
    return task.result() if task.done() else _Pending(task)


def _close_result(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is None and task.result() is not None:
        task.result()[0].close()


async def log_so_far(s: Any, ns: str, cid: str, stdout: bool, stderr: bool,
                     gone: Callable[[], bool]) -> AsyncIterator[list[tuple[str, bytes]]]:
    """An attach's logs=1: the container's log so far, in batches of (stream, bytes) read in a
    waits thread, until its end or the client's (gone()). Used under contextlib.aclosing: a
    client gone mid-batch closes the log file at once."""
    gen = s.containers.logs(ns, cid, stdout, stderr, False, None, 0, 0, False, ticks=True)
    loop = asyncio.get_running_loop()
    try:
        while True:
            items, ended = await loop.run_in_executor(s.waits, _log_batch, gen, gone)
            if items:
                yield items
            if ended or gone():
                return
    finally:
        gen.close()  # its log file, at once (a client that left before the end)


async def _replay_log(s: Any, ns: str, cid: str, stdout: bool, stderr: bool, tty: bool,
                      transport: asyncio.Transport, raw: _Raw) -> None:
    """An attach's logs=1 on the raw stream, framed as the container's stream is (multiplexed
    unless it has a TTY)."""
    # docker-py reads the stream from the socket under its HTTP reader: bytes that reach the
    # client with the answer's headers, in one read, are lost to it (dockerd's replay starts
    # later, after opening the log). The headers go alone first.
    await asyncio.sleep(0.02)
    async with contextlib.aclosing(log_so_far(s, ns, cid, stdout, stderr, transport.is_closing)) as batches:
        async for items in batches:
            transport.write(_framed(items, tty))
            await raw.drain()


async def resize(request: web.Request) -> web.Response:
    s = services(request)
    try:
        h, w = int(request.query.get("h", 24)), int(request.query.get("w", 80))
    except ValueError:
        raise InvalidArgument("h and w must be integers") from None
    await s.run(s.containers.resize, namespace_of(request), request.match_info["id"], h, w)
    return web.Response(status=200, headers=stream_headers())


def routes(r: Router) -> None:
    r.add("POST", "/containers/create", create)
    r.add("GET", "/containers/json", list_)
    r.add("POST", "/containers/{id}/start", start)
    r.add("POST", "/containers/{id}/wait", wait)
    r.add("GET", "/containers/{id}/json", inspect)
    r.add("DELETE", "/containers/{id}", remove)
    r.add("POST", "/containers/{id}/stop", stop)
    r.add("POST", "/containers/{id}/kill", kill)
    r.add("GET", "/containers/{id}/logs", logs)
    r.add("POST", "/containers/{id}/attach", attach)
    r.add("POST", "/containers/{id}/resize", resize)
    r.add("POST", "/containers/{id}/restart", restart)


async def restart(request: web.Request) -> web.Response:
    s = services(request)
    t = request.query.get("t")
    await s.run_wait(s.containers.restart, namespace_of(request), request.match_info["id"],
                     int(t) if t not in (None, "") else None, request.query.get("signal") or None)
    return web.Response(status=204, headers=stream_headers())
