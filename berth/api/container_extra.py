"""Docker Engine API container endpoints added for docker parity: link removal, update,
export. The work is in services/ (links, update, export)."""

from aiohttp import web

from berth.api.app import json_response, namespace_of, stream_headers
from berth.api.images import _bool
from berth.errors import InvalidArgument


async def remove_link(request):
    """DELETE /containers/{parent}/{alias}?link=1 (docker rm --link parent/alias)."""
    d = request.app["daemon"]
    ns = namespace_of(request)
    if not _bool(request, "link"):
        raise InvalidArgument("only a link can be removed at /containers/{parent}/{alias} (add link=1)")
    from berth.services import links
    await d.run(links.remove, d.containers, ns, request.match_info["id"], request.match_info["alias"])
    return web.Response(status=204, headers=stream_headers())


async def remove_default_link(request):
    """DELETE /containers/{id}?link=1 without an alias: docker's answer."""
    return json_response({"message": "Conflict, cannot remove the default link name of the container"}, status=409)


def routes(r):
    r.add("DELETE", "/containers/{id}/{alias}", remove_link)
    _routes_extra(r)


async def update(request):
    """POST /containers/{id}/update: resources and restart policy."""
    d = request.app["daemon"]
    ns = namespace_of(request)
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    from berth.services import update as upd
    res = await d.run(upd.update, d.containers, ns, request.match_info["id"], body)
    return json_response(res)


async def export(request):
    """GET /containers/{id}/export: the container's filesystem as a tar."""
    from berth.api.container_ops import stream_archive
    from berth.services import export as exp
    d = request.app["daemon"]
    ns = namespace_of(request)
    rec = await d.run(d.containers.get, ns, request.match_info["id"])
    archive = await d.run(exp.export, d.containers, ns, rec.id)
    return await stream_archive(request, d.pool, archive)


def add_sizes(d, ns, items):
    """/containers/json?size=1 and inspect ?size=1: SizeRw and SizeRootFs (blocking)."""
    from berth.services import export as exp
    isz = exp.image_sizes(d.containers, ns)
    for item in items:
        try:
            rec = d.containers.meta.get_container(ns, item["Id"])
        except Exception:  # noqa: BLE001 - removed meanwhile
            continue
        item["SizeRw"], item["SizeRootFs"] = exp.sizes(d.containers, rec, isz)
    return items


def _routes_extra(r):
    r.add("POST", "/containers/{id}/update", update)
    r.add("GET", "/containers/{id}/export", export)
