"""Build endpoints of the Docker Engine API: POST /build (the classic builder: a tar context
in the body, JSON progress streamed back), POST /build/prune, POST /commit."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from berth.api.app import Router, json_line, json_response, namespace_of, services, stream_headers
from berth.api.images import SyncBody, _bool, _filters
from berth.errors import BerthError, InvalidArgument
from berth.services import builder as builder_mod
from berth.services.layers import commit as commit_container


def _json_map(request: web.Request, key: str) -> dict:
    raw = request.query.get(key)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {key}: not JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, type(None))) for v in value.values()):
        raise InvalidArgument(f"invalid {key}: not a map of strings")
    return value


def _options(request: web.Request) -> builder_mod.Options:
    q = request.query
    if q.get("remote"):
        raise InvalidArgument("building from a remote context (a URL or a git repository) is not supported; "
                              "send the context as a tar")
    if q.get("version") == "2":
        raise InvalidArgument("BuildKit is not supported by berthd: use the classic builder (DOCKER_BUILDKIT=0)")
    tags = q.getall("t", [])
    from berth.oci import reference as refmod
    for t in tags:
        if refmod.parse_checked(t, dockerd_20=True).digest:  # (a bad one refused in dockerd's words)
            raise InvalidArgument("build tag cannot contain a digest")
    extrahosts = [h for h in q.get("extrahosts", "").split(",") if h]
    rm = q.get("rm", "1").lower() not in ("0", "false")
    # the RUN steps' containers get the build's resources, as dockerd's classic builder gives them
    # (the numbers and the ulimits' shape are checked by the route's schema, berth/api/validate.py)
    def checked(key: str) -> str | None:  # (the value the schema checked: a repeated one's last)
        return q.getall(key)[-1] if key in q else None
    resources: dict = {}
    for key, field in (("memory", "Memory"), ("memswap", "MemorySwap"), ("cpushares", "CpuShares"),
                       ("cpuperiod", "CpuPeriod"), ("cpuquota", "CpuQuota"), ("shmsize", "ShmSize")):
        if checked(key) not in (None, "", "0"):
            resources[field] = int(checked(key))
    for key, field in (("cpusetcpus", "CpusetCpus"), ("cpusetmems", "CpusetMems"), ("cgroupparent", "CgroupParent")):
        if checked(key):
            resources[field] = checked(key)
    if checked("ulimits") and json.loads(checked("ulimits")):
        resources["Ulimits"] = json.loads(checked("ulimits"))
    return builder_mod.Options(tags=tags, dockerfile=q.get("dockerfile") or "Dockerfile", buildargs=_json_map(request, "buildargs"),
                   target=q.get("target") or None, nocache=_bool(request, "nocache"), pull=_bool(request, "pull"),
                   quiet=_bool(request, "q"), labels=_json_map(request, "labels"),
                   networkmode=q.get("networkmode") or None, rm=rm, forcerm=_bool(request, "forcerm"),
                   platform=q.get("platform") or None, extrahosts=extrahosts, resources=resources)


async def build(request: web.Request) -> web.StreamResponse:
    """POST /build: answers a plain error when the build fails before saying anything
    (a bad Dockerfile, a missing file), else streams JSON and reports the error in-stream."""
    s = services(request)
    opts = _options(request)
    ns = namespace_of(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    body = SyncBody(request, loop)

    def emit(msg: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("msg", msg))

    fut = loop.run_in_executor(s.waits, lambda: s.builder.build(ns, body, opts, emit))
    fut.add_done_callback(lambda f: queue.put_nowait(("done", None)))
    resp = None

    async def write(msg: dict) -> None:
        nonlocal resp
        if resp is None:
            resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/json"}))
            await resp.prepare(request)
        await resp.write(json_line(msg, b"\r\n"))

    gone = False
    while True:
        try:
            kind, msg = await asyncio.wait_for(queue.get(), 1.0)
        except asyncio.TimeoutError:
            kind, msg = "tick", None
        if kind == "done":
            break
        if gone:
            continue
        try:
            if kind == "tick":
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError
                continue
            await write(msg)
        except (ConnectionError, RuntimeError):
            # the client went away (docker cancels the build then): stop it, let it end
            gone = True
            await s.run(builder_mod.cancel, s.containers, ns, opts)
    if gone:
        try:
            fut.result()
        except Exception:  # noqa: BLE001 - nobody is listening any more
            pass
        if resp is None:
            resp = web.StreamResponse(status=200, headers=stream_headers())
        return resp
    try:
        fut.result()
    except BerthError as e:
        if resp is None and not isinstance(e, builder_mod.BuildError):
            raise  # nothing said yet (a bad Dockerfile, a missing file): a plain error, as dockerd's
        code = getattr(e, "exit_code", None)
        detail = {"message": e.message}
        if code:
            detail["code"] = code
        await write({"errorDetail": detail, "error": e.message})
    except Exception as e:  # a bug: in-stream when the stream has begun
        if resp is None:
            raise
        msg = f"internal error: {type(e).__name__}: {e}"
        await write({"errorDetail": {"message": msg}, "error": msg})
    if resp is None:
        await write({"stream": ""})
    assert resp is not None  # written just above
    await resp.write_eof()
    return resp


async def build_prune(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.build_cache.prune, namespace_of(request), _bool(request, "all"),
                                     _filters(request)))


async def commit(request: web.Request) -> web.Response:
    s = services(request)
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
    res = await s.run(commit_container, s.containers, namespace_of(request), ref, repo=q.get("repo") or None, tag=q.get("tag") or None,
                      changes=q.getall("changes", []), comment=q.get("comment") or None,
                      author=q.get("author") or None, pause=pause)
    return json_response(res, status=201)


def routes(r: Router) -> None:
    r.add("POST", "/build", build)
    r.add("POST", "/build/prune", build_prune)
    r.add("POST", "/commit", commit)
