"""Build endpoints of the Docker Engine API: POST /build (the classic builder: a tar context
in the body, JSON progress streamed back), POST /build/prune, POST /commit."""

import json

from berth.api.app import json_response, namespace_of
from berth.api.images import _bool
from berth.errors import InvalidArgument


async def commit(request):
    d = request.app["daemon"]
    q = request.query
    ref = q.get("container")
    if not ref:
        raise InvalidArgument("container is required")
    raw = await request.read()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise InvalidArgument("request body is not JSON") from None
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("request body must be a JSON object")
    pause = q.get("pause", "1").lower() not in ("0", "false", "no")
    ns = namespace_of(request)
    from berth.services.layers import commit as do_commit
    res = await d.run(do_commit, d.containers, ns, ref, repo=q.get("repo") or None, tag=q.get("tag") or None,
                      changes=q.getall("changes", []), comment=q.get("comment") or None,
                      author=q.get("author") or None, pause=pause)
    if hasattr(d, "emit"):
        d.emit(ns, "container", "commit", ref)
    return json_response(res, status=201)


def routes(r):
    r.add("POST", "/commit", commit)


__all__ = ["routes", "_bool"]
