"""berth's namespaces (containerd's): /berth/namespaces."""

from berth.api.app import json_response
from berth.errors import InvalidArgument


async def list_(request):
    d = request.app["daemon"]
    return json_response(await d.run(d.namespaces))


async def create(request):
    d = request.app["daemon"]
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    name = (body or {}).get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("namespace name is required")
    await d.run(d.namespace_create, name, body.get("Labels") or {})
    return json_response({"Name": name}, status=201)


async def inspect(request):
    d = request.app["daemon"]
    return json_response(await d.run(d.namespace_inspect, request.match_info["name"]))


async def remove(request):
    d = request.app["daemon"]
    await d.run(d.namespace_remove, request.match_info["name"])
    return _no_content()


def _no_content():
    from aiohttp import web
    return web.Response(status=204)


def routes(r):
    r.add("GET", "/berth/namespaces", list_)
    r.add("POST", "/berth/namespaces", create)
    r.add("GET", "/berth/namespaces/{name}", inspect)
    r.add("DELETE", "/berth/namespaces/{name}", remove)
