"""Managed plugins: berth has none and installs none. The endpoints answer as dockerd's with no
plugin installed (an empty list, "plugin ... not found"), so `docker plugin ls` and clients
that look for a plugin get what they expect; installing or making one is refused."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router, json_response
from berth.api.images import _filters
from berth.errors import InvalidArgument, NotFound
from berth.services.filtermatch import filter_values


async def list_plugins(request: web.Request) -> web.Response:
    filters = _filters(request)
    for key, v in filters.items():  # dockerd's accepted filters, then the enabled one's values
        if key not in ("enabled", "capability"):
            raise InvalidArgument(f"Invalid filter '{key}'")
        vals = filter_values(v)
        if key == "enabled" and vals not in (["true"], ["false"]):
            raise InvalidArgument(f"Invalid filter 'enabled=[{' '.join(vals)}]'")
    return json_response([])


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f'plugin "{request.match_info["name"]}" not found')


async def push(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    last = name.rsplit("/", 1)[-1]
    raise NotFound(f'plugin "{name if ":" in last or "@" in last else name + ":latest"}" not found')


async def refuse(request: web.Request) -> web.Response:
    raise InvalidArgument("berth does not install or make managed plugins")


def routes(r: Router) -> None:
    r.add("GET", "/plugins", list_plugins)
    r.add("GET", "/plugins/privileges", refuse)
    r.add("POST", "/plugins/pull", refuse)
    r.add("POST", "/plugins/create", refuse)
    r.add("GET", "/plugins/{name:.+}/json", not_found)
    r.add("DELETE", "/plugins/{name:.+}", not_found)
    for action in ("enable", "disable", "set", "upgrade"):
        r.add("POST", "/plugins/{name:.+}/" + action, not_found)
    r.add("POST", "/plugins/{name:.+}/push", push)
