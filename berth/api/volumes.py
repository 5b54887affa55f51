"""Volume endpoints of the Docker Engine API: /volumes, /volumes/create, /volumes/{name}, /volumes/prune."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router, api_version, json_body, json_response, member, namespace_of, services, stream_headers
from berth.api.images import _bool, _filters
from berth.errors import InvalidArgument


async def list_(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.volumes.list, namespace_of(request), _filters(request)))


async def create(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    v = await s.run(s.volumes.create, namespace_of(request), member(body, "Name", str) or None,
                    member(body, "Driver", str) or None, member(body, "DriverOpts", dict) or None,
                    member(body, "Labels", dict) or None)
    return json_response(v, status=201)


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.volumes.inspect, namespace_of(request), request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    s = services(request)
    await s.run(s.volumes.remove, namespace_of(request), request.match_info["name"], _bool(request, "force"))
    return web.Response(status=204, headers=stream_headers())


async def prune(request: web.Request) -> web.Response:
    s = services(request)
    filters = _filters(request)
    v = api_version(request)
    if v is not None and v < (1, 42):
        if "all" in filters:  # a filter of API 1.42 (dockerd 20.10's words)
            raise InvalidArgument("Invalid filter 'all'")
        filters = dict(filters, all=["true"])  # before API 1.42 prune took named volumes too
    return json_response(await s.run(s.volumes.prune, namespace_of(request), filters))


def routes(r: Router) -> None:
    r.add("GET", "/volumes", list_)
    r.add("POST", "/volumes/create", create)
    r.add("POST", "/volumes/prune", prune)
    r.add("GET", "/volumes/{name}", inspect)
    r.add("DELETE", "/volumes/{name}", remove)
