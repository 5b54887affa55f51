"""The aiohttp application: routing with and without /vX.Y, errors as JSON, Api-Version."""

import json
import logging

from aiohttp import web

from berth import __version__
from berth.errors import BerthError

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
NAMESPACE_HEADER = "X-Berth-Namespace"

log = logging.getLogger("berthd.api")


def json_response(data, status=200, headers=None):
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json",
                        headers=headers)


def error_response(status, message):
    return json_response({"message": message}, status=status)


@web.middleware
async def errors_middleware(request, handler):
    try:
        resp = await handler(request)
    except BerthError as e:
        resp = error_response(e.http_status, e.message)
    except web.HTTPException as e:
        if e.status == 404:
            resp = error_response(404, "page not found")
        elif e.status == 405:  # no route for this method: a miss, and a miss is a 404
            resp = error_response(404, "page not found")
        elif e.status >= 400:
            resp = error_response(e.status, e.reason or "error")
        else:
            raise
    except Exception as e:  # a bug: say so, log the traceback
        log.exception("internal error handling %s %s", request.method, request.path)
        resp = error_response(500, f"internal error: {type(e).__name__}: {e}")
    if not resp.prepared:
        resp.headers["Api-Version"] = API_VERSION
        resp.headers["Server"] = f"berth/{__version__} (linux)"
        resp.headers["Docker-Experimental"] = "false"
        resp.headers["Ostype"] = "linux"
    return resp


def stream_headers():
    return {"Api-Version": API_VERSION, "Server": f"berth/{__version__} (linux)"}


class Router:
    """Adds each route twice: at /path and at /v{X.Y}/path, as dockerd answers both."""

    def __init__(self, app):
        self.app = app

    def add(self, method, path, handler):
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{_api_version:[0-9]+\.[0-9]+}" + path, handler)


def services(request):
    """The use-cases (berth.services.Services) the handlers call."""
    return request.app["services"]


def namespace_of(request):
    ns = request.headers.get(NAMESPACE_HEADER)
    if not ns:
        return request.app["daemon"].cfg.namespace
    from berth.metadata.records import check_namespace
    return check_namespace(ns)  # a bad header is a 400, not an empty namespace


def make_app(daemon):
    app = web.Application(middlewares=[errors_middleware], client_max_size=0)
    app["daemon"] = daemon
    app["services"] = getattr(daemon, "services", None)
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
    from berth.api import swarm
    swarm.routes(r)
    return app
