"""Swarm mode: berth is a node that is not part of a swarm, and answers as docker's does then
(503), so clients that probe or clean up through these endpoints get what they expect."""

from __future__ import annotations

from aiohttp import web

from berth.api.app import Router
from berth.errors import SWARM_NOT_MANAGER, Unavailable


async def not_manager(request: web.Request) -> web.Response:
    raise Unavailable(SWARM_NOT_MANAGER)


async def leave(request: web.Request) -> web.Response:
    raise Unavailable("This node is not part of a swarm")


async def refuse(request: web.Request) -> web.Response:
    raise Unavailable("berth does not implement swarm mode: this node cannot init or join a swarm")


def routes(r: Router) -> None:
    r.add("POST", "/swarm/init", refuse)
    r.add("POST", "/swarm/join", refuse)
    r.add("POST", "/swarm/leave", leave)
    for path in ("/swarm", "/swarm/unlockkey", "/nodes", "/nodes/{id}", "/services", "/services/{id}",
                 "/services/{id}/logs", "/tasks", "/tasks/{id}", "/tasks/{id}/logs", "/secrets", "/secrets/{id}",
                 "/configs", "/configs/{id}"):
        r.add("GET", path, not_manager)
    for path in ("/swarm/update", "/swarm/unlock", "/nodes/{id}/update", "/services/create", "/services/{id}/update",
                 "/secrets/create", "/secrets/{id}/update", "/configs/create", "/configs/{id}/update"):
        r.add("POST", path, not_manager)
    for path in ("/nodes/{id}", "/services/{id}", "/secrets/{id}", "/configs/{id}"):
        r.add("DELETE", path, not_manager)
