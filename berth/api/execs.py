"""Exec endpoints: create an exec instance, start it (hijacked stream), inspect, resize.
The use-case is berth.services.execs; these handlers translate HTTP only."""

import asyncio

from aiohttp import web

from berth.api.app import json_response, namespace_of, services, stream_headers
from berth.api.containers import hijack, pipe
from berth.errors import InvalidArgument


async def create(request):
    s = services(request)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    eid = await s.run(s.execs.create, namespace_of(request), request.match_info["id"], body)
    return json_response({"Id": eid}, status=201)


async def start(request):
    s = services(request)
    try:
        body = await request.json()
    except ValueError:
        body = {}
    detach = bool((body or {}).get("Detach"))
    res = await s.run(s.execs.start, request.match_info["id"], detach)
    if res is None:
        return web.Response(status=200, headers=stream_headers())
    sock, _ = res
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
    transport, raw = hijack(request)
    await pipe(transport, raw, reader, writer)
    return web.Response()


async def inspect(request):
    s = services(request)
    return json_response(await s.run(s.execs.inspect, request.match_info["id"]))


async def resize(request):
    s = services(request)
    try:
        h, w = int(request.query.get("h", 24)), int(request.query.get("w", 80))
    except ValueError:
        raise InvalidArgument("h and w must be integers") from None
    await s.run(s.execs.resize, request.match_info["id"], h, w)
    return web.Response(status=200, headers=stream_headers())


def routes(r):
    r.add("POST", "/containers/{id}/exec", create)
    r.add("POST", "/exec/{id}/start", start)
    r.add("GET", "/exec/{id}/json", inspect)
    r.add("POST", "/exec/{id}/resize", resize)
