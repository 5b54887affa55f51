"""Exec endpoints: create an exec instance, start it (hijacked stream), inspect, resize.
The use-case is berth.services.execs; these handlers translate HTTP only."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from berth.api.app import Router, json_body, json_response, namespace_of, services, stream_headers
from berth.api.containers import hijack, pipe
from berth.errors import BerthError, InvalidArgument


async def create(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    eid = await s.run(s.execs.create, namespace_of(request), request.match_info["id"], body)
    return json_response({"Id": eid}, status=201)


async def start(request: web.Request) -> web.Response:
    s = services(request)
    try:
        body = await request.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    eid = request.match_info["id"]
    detach = bool(body.get("Detach"))
    size = body.get("ConsoleSize")
    from berth.services.execs import check_not_started
    inst = s.execs.get(eid)
    check_not_started(inst)
    if detach:
        if await s.run(s.execs.start, eid, True, size) is None:
            return web.Response(status=200, headers=stream_headers())
    # attached, the head goes first: no output of the process may share a read with it (clients
    # that read the head through a buffer would lose it); a failed start is then told in the stream
    transport, raw = hijack(request)
    tty = bool(body.get("Tty"))  # docker's rule: the start body's Tty decides the framing
    try:
        sock, _ = await s.run(s.execs.start, eid, False, size)
    except BerthError as e:
        text = (e.message + "\r\n").encode()
        transport.write(text if tty else b"\x01\0\0\0" + len(text).to_bytes(4, "big") + text)
        transport.close()
        return web.Response()
    reader: Any
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    if tty != inst.terminal:
        reader = _Reframe(reader, frame=not tty)
    await pipe(transport, raw, reader, writer, detach=inst.stdin_detach_keys)
    return web.Response()


class _Reframe:
    """The shim frames an exec's output by its process's terminal (raw bytes of a pty, or
    docker's 8-byte headed frames of stdout/stderr): frames a pty's bytes as stdout, or unframes."""

    def __init__(self, reader: asyncio.StreamReader, frame: bool) -> None:
        self.reader, self.frame, self.buf = reader, frame, b""

    async def read(self, n: int) -> bytes:
        if self.frame:
            data = await self.reader.read(n)
            return b"\x01\0\0\0" + len(data).to_bytes(4, "big") + data if data else b""
        while True:
            out = b""
            while len(self.buf) >= 8 and len(self.buf) >= 8 + int.from_bytes(self.buf[4:8], "big"):
                size = int.from_bytes(self.buf[4:8], "big")
                out += self.buf[8:8 + size]
                self.buf = self.buf[8 + size:]
            if out:
                return out
            data = await self.reader.read(n)
            if not data:
                return b""
            self.buf += data


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.execs.inspect, request.match_info["id"]))


async def resize(request: web.Request) -> web.Response:
    s = services(request)
    try:
        h, w = int(request.query.get("h", 24)), int(request.query.get("w", 80))
    except ValueError:
        raise InvalidArgument("h and w must be integers") from None
    await s.run(s.execs.resize, request.match_info["id"], h, w)
    return web.Response(status=200, headers=stream_headers())


def routes(r: Router) -> None:
    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)
