"""berth's namespaces (containerd's): /berth/namespaces."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router, json_body, json_response, member, services


async def list_(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.system.namespaces))


async def create(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    name = member(body, "Name", str, required="namespace name is required")
    await s.run(s.system.namespace_create, name, member(body, "Labels", dict))
    return json_response({"Name": name}, status=201)


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.system.namespace_inspect, request.match_info["name"]))


async def remove(request: web.Request) -> web.Response:
    s = services(request)
    await s.run(s.system.namespace_remove, request.match_info["name"])
    return web.Response(status=204)


def routes(r: Router) -> None:
    r.add("GET", "/berth/namespaces", list_)
    r.add("POST", "/berth/namespaces", create)
    r.add("GET", "/berth/namespaces/{name}", inspect)
    r.add("DELETE", "/berth/namespaces/{name}", remove)
