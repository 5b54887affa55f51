"""Docker Engine API endpoints for pause/unpause, rename, top, stats, archive (cp), changes
(diff) and prune. The work is in berth.services.container_ops."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from aiohttp import web

from berth.api.app import Router, json_line, json_response, namespace_of, services, stream_headers
from berth.api.images import SyncBody, _bool, _filters
from berth.errors import InvalidArgument
from berth.services import Services
from berth.services import container_ops as ops

if TYPE_CHECKING:
    from berth.metadata.records import Container
    from berth.services.archive import Archive
    from berth.services.containers import ContainerService

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _svc(request: web.Request) -> tuple[Services, ContainerService, str]:
    s = services(request)
    return s, s.containers, namespace_of(request)


async def _rec(s: Services, svc, ns: str, request: web.Request) -> Container:
    return await s.run(svc.get, ns, request.match_info["id"])


async def pause(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    rec = await _rec(s, svc, ns, request)
    await s.run(svc.pause, ns, rec.id)
    return web.Response(status=204, headers=stream_headers())


async def unpause(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    rec = await _rec(s, svc, ns, request)
    await s.run(svc.unpause, ns, rec.id)
    return web.Response(status=204, headers=stream_headers())


async def rename(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    if not request.query.get("name", "").lstrip("/"):  # dockerd's, before the container
        raise InvalidArgument("Neither old nor new names may be empty")
    rec = await _rec(s, svc, ns, request)
    await s.run(ops.rename, svc, ns, rec.id, request.query.get("name", ""))
    return web.Response(status=204, headers=stream_headers())


async def top(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    rec = await _rec(s, svc, ns, request)
    res = await s.run(ops.top, svc, ns, rec.id, request.query.get("ps_args"))
    return json_response(res)


async def stats(request: web.Request) -> web.StreamResponse:
    s, svc, ns = _svc(request)
    q = request.query
    stream = q.get("stream", "true").lower() not in ("0", "false", "no")
    one_shot = _bool(request, "one-shot")
    rec = await s.run(svc.get, ns, request.match_info["id"])
    gen = ops.stats(svc, ns, rec.id, stream=stream, one_shot=one_shot)
    loop = asyncio.get_running_loop()
    done = object()
    if not stream:
        item = await loop.run_in_executor(s.waits, next, gen, done)
        gen.close()
        return json_response(item)
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/json"}))
    await resp.prepare(request)
    try:
        while True:
            item = await loop.run_in_executor(s.waits, next, gen, done)
            if item is done:
                break
            await resp.write(json_line(item))
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away (docker stats stops reading)
    finally:
        await loop.run_in_executor(s.pool, _close_quietly, gen)
    return resp


def _close_quietly(gen) -> None:
    try:
        gen.close()
    except ValueError:  # still running in another thread (a cancelled request)
        pass


async def archive_head(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    info = await s.run(ops.stat_path, svc, ns, request.match_info["id"], request.query.get("path", ""))
    return web.Response(status=200, headers=dict(stream_headers(), **{
        STAT_HEADER: ops.encode_stat(info), "Content-Type": "application/json"}))


async def archive_get(request: web.Request) -> web.StreamResponse:
    s, svc, ns = _svc(request)
    path = request.query.get("path", "")
    archive = await s.run(ops.get_archive, svc, ns, request.match_info["id"], path)  # errors name it as asked
    return await stream_archive(request, s.pool, archive, {STAT_HEADER: ops.encode_stat(archive.stat)})


async def stream_archive(request: web.Request, pool: Executor, archive: Archive,
                         headers: dict | None = None) -> web.StreamResponse:
    """Answer with an Archive's tar bytes (read in the pool, written in 64 KiB pieces); close it."""
    loop = asyncio.get_running_loop()
    done = object()
    try:
        resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{
            "Content-Type": "application/x-tar"}, **(headers or {})))
        await resp.prepare(request)
        try:
            buf = []
            size = 0
            while True:
                chunk = await loop.run_in_executor(pool, next, archive, done)
                if chunk is done:
                    break
                buf.append(chunk)
                size += len(chunk)
                if size >= 1 << 16:
                    await resp.write(b"".join(buf))
                    buf, size = [], 0
            if buf:
                await resp.write(b"".join(buf))
            await resp.write_eof()
        except ConnectionError:
            pass  # the client stopped reading
        except Exception:
            if request.transport is not None:
                request.transport.close()  # the headers are gone: cut the stream (no last chunk)
            raise
        return resp
    finally:
        await loop.run_in_executor(pool, archive.close)


async def archive_put(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    q = request.query
    await _rec(s, svc, ns, request)  # no such container: its 404 before the body is read
    body = SyncBody(request, asyncio.get_running_loop())
    await s.run(ops.put_archive, svc, ns, request.match_info["id"], q.get("path", ""), body,
                _bool(request, "copyUIDGID"), _bool(request, "noOverwriteDirNonDir"))
    return web.Response(status=200, headers=stream_headers())


async def changes(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    # none: null, as dockerd's (a nil list)
    return json_response(await s.run(ops.changes, svc, ns, request.match_info["id"]) or None)


async def prune(request: web.Request) -> web.Response:
    s, svc, ns = _svc(request)
    return json_response(await s.run(ops.prune, svc, ns, _filters(request)))


def routes(r: Router) -> None:
    r.add("POST", "/containers/prune", prune)
    r.add("POST", "/containers/{id}/pause", pause)
    r.add("POST", "/containers/{id}/unpause", unpause)
    r.add("POST", "/containers/{id}/rename", rename)
    r.add("GET", "/containers/{id}/top", top)
    r.add("GET", "/containers/{id}/stats", stats)
    r.add("HEAD", "/containers/{id}/archive", archive_head)
    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("PUT", "/containers/{id}/archive", archive_put)
    r.add("GET", "/containers/{id}/changes", changes)
