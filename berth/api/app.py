"""The aiohttp application: routing with and without /vX.Y, errors as JSON, Api-Version."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Awaitable, Callable

from aiohttp import web

from berth import __version__
from berth.api import validate
from berth.errors import BerthError, InvalidArgument
from berth.services import Services


API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
NAMESPACE_HEADER = "X-Berth-Namespace"

log = logging.getLogger("berthd.api")
SERVICES = web.AppKey("services", Services)  # the Services the handlers call
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_line(data: Any, end: bytes = b"\n") -> bytes:
    """A value as dockerd writes it (Go's json.Encoder): compact, then a newline."""
    return json.dumps(data, separators=(",", ":")).encode() + end


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json_line(data), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str) -> web.Response:
    if len(message) > 1024:  # never echo a whole huge name or body back
        message = message[:1024] + "..."
    return json_response({"message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        await validate.check(request, validate.route_of(request), MIN_API_VERSION, API_VERSION)
        resp = await handler(request)
    except BerthError as e:
        resp = error_response(e.http_status, e.message)
    except web.HTTPException as e:
        if e.status == 404:
            resp = error_response(404, "page not found")
        elif e.status == 405:  # no route for this method: a miss, and a miss is a 404
            resp = error_response(404, "page not found")
        elif e.status == 413:
            resp = error_response(413, f"request body too large (a JSON body may have at most {validate.MAX_JSON_BODY} bytes)")
        elif e.status >= 400:
            resp = error_response(e.status, e.reason or "error")
        else:
            raise
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            status, message = unexpected_error(sys.exc_info()[1] or ConnectionError(), request)
            resp = error_response(status, message)
        else:  # the client went away (logs -f, events, a stream it stopped reading): not an error
            log.debug("%s %s: the client went away", request.method, request.path)
            return web.Response(status=499)
    except Exception as e:
        status, message = unexpected_error(e, request)
        resp = error_response(status, message)
    if not resp.prepared:
        resp.headers.update(stream_headers())
    return resp


def unexpected_error(e: BaseException, request: web.Request) -> tuple[int, str]:
    """(status, message) for an exception that is not a BerthError. A full disk (or quota) is
    the host's condition, said in one line; anything else is a bug in berth: its traceback goes
    to the log, and the client is told "internal error" without Python's internals."""
    import errno
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        log.warning("%s %s: %s", request.method, request.path, e)
        return 500, os.strerror(e.errno).lower()
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:  # a name the client gave
        return 400, "file name too long"
    log.error("internal error handling %s %s", request.method, request.path, exc_info=e)
    return 500, "internal error (a bug in berthd: see its log)"


def stream_headers() -> dict[str, str]:
    """The headers of every answer (dockerd's middleware sets them before any handler writes):
    a handler that answers itself (a stream, an upgrade) starts from them."""
    return {"Api-Version": API_VERSION, "Server": f"berth/{__version__} (linux)",
            "Docker-Experimental": "false", "Ostype": "linux"}


async def options(request: web.Request) -> web.Response:
    """OPTIONS on any path: 200 and no body, as dockerd answers it (a browser's CORS preflight)."""
    return web.Response(status=200, headers=stream_headers())


def cors_headers(origin: str) -> dict[str, str]:
    """What dockerd's api-cors-header adds to the answers of its routes."""
    return {"Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": "Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth",
            "Access-Control-Allow-Methods": "HEAD, GET, POST, DELETE, PUT, OPTIONS"}


class Router:
    """Adds each route twice: at /path and at /v{X.Y}/path, as dockerd answers both."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{_api_version:[0-9]+\.[0-9]+}" + path, handler)


def services(request: web.Request) -> Services:
    """The use-cases (berth.services.Services) the handlers call."""
    return request.app[SERVICES]


def api_version(request: web.Request) -> tuple[int, int] | None:
    """The API version the request's path names (/v1.41/...), or None: the newest."""
    v = request.match_info.get("_api_version")
    if not v:
        return None
    major, _, minor = v.partition(".")
    return int(major), int(minor)


def namespace_of(request: web.Request) -> str:
    ns = request.headers.get(NAMESPACE_HEADER)
    if not ns:
        return services(request).cfg.namespace
    from berth.metadata.records import check_namespace
    return check_namespace(ns)  # a bad header is a 400, not an empty namespace


async def json_body(request: web.Request) -> dict:
    """The request's JSON object (a body that is not one: a 400)."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def member(body: dict, key: str, kind: type, required: str = "") -> Any:
    """body[key] if it is of kind (a str or a dict); absent, null or empty: the kind's empty value,
    or a 400 saying ``required`` when it must be there."""
    v = body.get(key)
    if v is None or v == "" or v == {}:
        if required:
            raise InvalidArgument(required)
        return kind()
    if not isinstance(v, kind):
        raise InvalidArgument(f"{key} must be {'a string' if kind is str else 'an object'}")
    return v


def make_app(svc: Services | None) -> web.Application:
    """The API over the services (None: the routes only, to list them)."""
    # request.read()/json() stop there (a 413); tar bodies are streams and are not bounded by it
    app = web.Application(middlewares=[errors_middleware], client_max_size=validate.MAX_JSON_BODY)
    if svc is not None:
        app[SERVICES] = svc
    r = Router(app)
    from berth.api import containers, events, execs, images, namespaces, system
    system.routes(r)
    namespaces.routes(r)
    images.routes(r)
    containers.routes(r)
    from berth.api import container_ops
    container_ops.routes(r)
    execs.routes(r)
    events.routes(r)
    from berth.api import networks
    networks.routes(r)
    from berth.api import volumes
    volumes.routes(r)
    from berth.api import build
    build.routes(r)
    from berth.api import swarm
    swarm.routes(r)
    from berth.api import plugins
    plugins.routes(r)
    from berth.api import container_extra
    container_extra.routes(r)
    from berth.api import attach_ws
    attach_ws.routes(r)
    app.router.add_route("OPTIONS", "/{_any:.*}", options)
    origin = svc.cfg.api_cors_header if svc is not None else ""
    if origin:  # daemon.json's api-cors-header: on every answer of a route (a stream's and an upgrade's too)
        async def cors(request: web.Request, response: web.StreamResponse) -> None:
            if request.match_info.http_exception is None:  # (dockerd's "page not found" has none)
                response.headers.update(cors_headers(origin))
        app.on_response_prepare.append(cors)
    return app
