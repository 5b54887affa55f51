"""GET /containers/{id}/attach/ws: the attach endpoint over a websocket (what web consoles such
as Portainer's use), as dockerd's: one message per piece of output, never multiplexed (stdout
and stderr alike), binary frames from API 1.28 on (text before); what the client sends goes to
the container's stdin. Before API 1.42 the stdin/stdout/stderr parameters are ignored (every
stream); logs=1 replays the log first, stream=1 follows the container (one that does not run
is waited for, as the raw attach does). The work is the raw attach's (berth/api/containers.py,
ContainerService.attach)."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from aiohttp import WSMsgType, web

from berth.api.app import Router, api_version, namespace_of, services
from berth.api.containers import _escape, log_so_far
from berth.api.images import _bool
from berth.services.containers import check_log_readable
from berth.services.execs import detach_keys


async def attach_ws(request: web.Request) -> web.StreamResponse:
    s = services(request)
    ns = namespace_of(request)
    rec = await s.run(s.containers.get, ns, request.match_info["id"])  # a 404 before the upgrade
    s.containers.check_attachable(ns, rec, request.match_info["id"])
    version = api_version(request)
    if version is None or version >= (1, 42):
        want = {k: _bool(request, k) for k in ("stdin", "stdout", "stderr")}
    else:  # dockerd's before 1.42: every stream, whatever was asked
        want = {"stdin": True, "stdout": True, "stderr": True}
    logs, live = _bool(request, "logs"), _bool(request, "stream")
    spec = rec.spec_json() or {}
    tty = bool(spec.get("Tty"))
    if logs:
        check_log_readable(spec)
    given = detach_keys(request.query.get("detachKeys"))
    keys = given if want["stdin"] and tty else None
    binary = version is None or version >= (1, 28)
    ws = web.WebSocketResponse(autoping=True)

    async def send(data: bytes) -> None:
        if binary:
            await ws.send_bytes(data)
        else:
            await ws.send_str(data.decode(errors="replace"))

    res = None
    if live:
        s.containers.expect_attach(rec.id)  # before the upgrade: the client's start may follow
    announced = live  # until containers.attach takes it over
    try:
        await ws.prepare(request)
        if logs and (want["stdout"] or want["stderr"]):
            async with contextlib.aclosing(log_so_far(s, ns, rec.id, want["stdout"], want["stderr"],
                                                      lambda: ws.closed)) as batches:
                async for items in batches:
                    for _, data in items:
                        await send(data)
        s.containers.attached(ns, rec)
        if live and not ws.closed:
            announced = False
            res = await s.run_wait(s.containers.attach, ns, rec.id, want["stdin"], want["stdout"], want["stderr"])
    finally:
        if announced:
            s.containers.attach_done(rec.id)
    if res is None:
        await ws.close()
        return ws
    reader, writer = await asyncio.open_unix_connection(sock=res[0], limit=1 << 20)

    async def client_to_shim() -> None:
        held = b""
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if keys:
                data, detached, held = _escape(held + data, keys)
                if detached:
                    if data and want["stdin"]:
                        writer.write(data)
                    break
            if want["stdin"] and data:
                writer.write(data)
                await writer.drain()
        writer.close()  # the client is gone (or detached): the shim sees its attach end

    pump = asyncio.ensure_future(client_to_shim())
    try:
        while not ws.closed:
            if tty:
                data = await reader.read(65536)
            else:
                try:
                    _, size = struct.unpack(">BxxxI", await reader.readexactly(8))
                    data = await reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    data = b""
            if not data:
                break
            await send(data)
    except (ConnectionError, OSError):
        pass
    finally:
        pump.cancel()
        writer.close()
    await ws.close()
    return ws


def routes(r: Router) -> None:
    r.add("GET", "/containers/{id}/attach/ws", attach_ws)
