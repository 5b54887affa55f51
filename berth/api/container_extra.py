"""Docker Engine API container endpoints added for docker parity: link removal, update,
export. The work is in services/ (links, update, export)."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router, json_body, json_response, namespace_of, services, stream_headers
from berth.api.images import _bool
from berth.errors import InvalidArgument


async def remove_link(request: web.Request) -> web.Response:
    """DELETE /containers/{parent}/{alias}?link=1 (docker rm --link parent/alias)."""
    s = services(request)
    ns = namespace_of(request)
    if not _bool(request, "link"):
        raise InvalidArgument("only a link can be removed at /containers/{parent}/{alias} (add link=1)")
    from berth.services import links
    await s.run(links.remove, s.containers, ns, request.match_info["id"], request.match_info["alias"])
    return web.Response(status=204, headers=stream_headers())


async def remove_default_link(request: web.Request) -> web.Response:
    """DELETE /containers/{id}?link=1 without an alias: docker's answer."""
    return json_response({"message": "Conflict, cannot remove the default link name of the container"}, status=409)


def routes(r: Router) -> None:
    r.add("DELETE", "/containers/{id}/{alias}", remove_link)
    _routes_extra(r)


async def update(request: web.Request) -> web.Response:
    """POST /containers/{id}/update: resources and restart policy."""
    s = services(request)
    body = await json_body(request)
    from berth.services import update as upd
    return json_response(await s.run(upd.update, s.containers, namespace_of(request), request.match_info["id"], body))


async def export(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/export: the container's filesystem as a tar."""
    from berth.api.container_ops import stream_archive
    from berth.services import export as exp
    s = services(request)
    archive = await s.run(exp.export, s.containers, namespace_of(request), request.match_info["id"])
    return await stream_archive(request, s.pool, archive)


def _routes_extra(r: Router) -> None:
    r.add("POST", "/containers/{id}/update", update)
    r.add("GET", "/containers/{id}/export", export)
