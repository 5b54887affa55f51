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
