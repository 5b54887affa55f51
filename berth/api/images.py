"""Image endpoints of the Docker Engine API."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any, Callable

from aiohttp import web

from berth.api.app import Router, api_version, json_line, json_response, namespace_of, services, stream_headers
from berth.errors import BerthError, InvalidArgument
from berth.oci import reference as refmod
from berth.services import image_ops


def _bool(request: web.Request, key: str) -> bool:
    return request.query.get(key, "").lower() in ("1", "true", "yes")


def _filters(request: web.Request) -> dict:
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        f = json.loads(raw)
    except ValueError:
        raise InvalidArgument("invalid filters: not JSON") from None
    if not isinstance(f, dict):
        raise InvalidArgument("invalid filters: not an object")
    return f


def _auth(request: web.Request) -> dict | None:
    h = request.headers.get("X-Registry-Auth")
    if not h:
        return None
    try:
        pad = "=" * (-len(h) % 4)
        data = json.loads(base64.urlsafe_b64decode(h + pad))
    except (ValueError, TypeError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    return data if isinstance(data, dict) and any(data.values()) else None


class SyncBody:
    """The request body as a blocking file object, for a worker thread."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content = request.content
        self.loop = loop
        self.buf = b""

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            chunks = [self.buf]
            self.buf = b""
            while True:
                c = asyncio.run_coroutine_threadsafe(self.content.read(1 << 20), self.loop).result()
                if not c:
                    return b"".join(chunks)
                chunks.append(c)
        while len(self.buf) < n:
            c = asyncio.run_coroutine_threadsafe(self.content.read(max(n - len(self.buf), 65536)), self.loop).result()
            if not c:
                break
            self.buf += c
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class Job:
    """Runs a blocking job that reports progress; answers a plain error if it fails before
    saying anything (as dockerd does), else streams JSON lines and reports the error in-stream."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.resp: web.StreamResponse | None = None
        self.errors_in_stream = False  # a failure before any progress is still a 200 with the error in the stream

    def progress(self, msg: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("msg", msg))

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def work():
            return fn(*args, progress=self.progress, **kwargs)
        fut = self.loop.run_in_executor(services(self.request).pool, work)
        fut.add_done_callback(lambda f: self.queue.put_nowait(("done", None)))
        while True:
            kind, msg = await self.queue.get()
            if kind == "done":
                break
            await self._write(msg)
        try:
            result = fut.result()
        except BerthError as e:
            if self.resp is None and not self.errors_in_stream:
                raise
            await self._write({"errorDetail": {"message": e.message}, "error": e.message})
            result = None
        except Exception as e:
            if self.resp is None:
                raise
            from berth.api.app import unexpected_error
            msg = unexpected_error(e, self.request)[1]
            await self._write({"errorDetail": {"message": msg}, "error": msg})
            result = None
        return result

    async def _write(self, msg: dict) -> None:
        if self.resp is None:
            self.resp = web.StreamResponse(status=200, headers=dict(stream_headers(),
                                                                    **{"Content-Type": "application/json"}))
            await self.resp.prepare(self.request)
        await self.resp.write(json_line(msg, b"\r\n"))

    async def finish(self) -> web.StreamResponse:
        if self.resp is None:
            self.resp = web.StreamResponse(status=200, headers=dict(stream_headers(),
                                                                    **{"Content-Type": "application/json"}))
            await self.resp.prepare(self.request)
        await self.resp.write_eof()
        return self.resp


async def list_(request: web.Request) -> web.Response:
    s = services(request)
    v = api_version(request)
    items = await s.run(image_ops.list_images, s.images, namespace_of(request), _bool(request, "all"),
                        _filters(request), _bool(request, "digests"),
                        shared_size=_bool(request, "shared-size") and (v is None or v >= (1, 42)))
    return json_response(without_virtual_size(items, v))


async def inspect(request: web.Request) -> web.Response:
    s = services(request)
    refmod.check_any(request.match_info["name"])
    res = await s.run(s.images.inspect, namespace_of(request), request.match_info["name"])
    # (Container and ContainerConfig stay at 1.45, where dockerd 26+ drops them: docker-compose
    # 1.29, which negotiates the newest version, reads ContainerConfig and fails without it)
    return json_response(without_virtual_size([res], api_version(request))[0])


def without_virtual_size(images: list[dict], v: tuple[int, int] | None) -> list[dict]:
    """VirtualSize (Size's twin) is omitted from API 1.44 on (images, image inspect, system df)."""
    if v is not None and v < (1, 44):
        return images
    return [{k: x for k, x in img.items() if k != "VirtualSize"} for img in images]


async def history(request: web.Request) -> web.Response:
    s = services(request)
    refmod.check_any(request.match_info["name"])
    return json_response(await s.run(s.images.history, namespace_of(request), request.match_info["name"]))


async def tag(request: web.Request) -> web.Response:
    s = services(request)
    repo = request.query.get("repo") or ""  # dockerd: an empty one is an invalid reference (after the image)
    refmod.check_any(request.match_info["name"])
    await s.run(s.images.tag, namespace_of(request), request.match_info["name"], repo, request.query.get("tag"))
    return web.Response(status=201, headers=stream_headers())


async def remove(request: web.Request) -> web.Response:
    s = services(request)
    refmod.check_any(request.match_info["name"])
    return json_response(await s.run(image_ops.remove_image, s.images, s.containers, namespace_of(request),
                                     request.match_info["name"], _bool(request, "force"),
                                     _bool(request, "noprune")))


async def prune(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(image_ops.prune_images, s.images, s.containers, namespace_of(request),
                                     _filters(request)))


async def create(request: web.Request) -> web.StreamResponse:
    """POST /images/create: pull (fromImage) or import (fromSrc)."""
    s = services(request)
    ns = namespace_of(request)
    q = request.query
    job = Job(request)
    if q.get("fromSrc") is not None:
        if q["fromSrc"] != "-":
            raise InvalidArgument("importing from a URL is not supported; send the tar as the body (fromSrc=-)")
        body = SyncBody(request, job.loop)
        await job.run(s.images.import_, ns, body, repo=q.get("repo"), tag=q.get("tag"),
                      changes=q.getall("changes", []), message=q.get("message"), platform=q.get("platform"))
        return await job.finish()
    image = q.get("fromImage")
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    t = q.get("tag")
    ref = image.removesuffix(":")  # dockerd's: `name:` is the name
    if t:
        ref = f"{ref}@{t}" if t.startswith("sha256:") else f"{ref}:{t}"
    # no tag, and none in fromImage: every tag of the repository (docker's `pull -a`), as dockerd
    await job.run(_pull_as_dockerd, s.images, ns, ref, platform=q.get("platform") or None, auth=_auth(request),
                  all_tags=not t)
    return await job.finish()


def _pull_as_dockerd(images, ns: str, ref: str, progress, **kw) -> str:
    """The pull; a registry it cannot reach before anything was said is named as dockerd names
    it, by its ping: `Get "http://<host>/v2/": dial tcp <ip:port>: connect: connection refused`
    (an error response, 503: the registry is unavailable; dockerd's is a 500)."""
    from berth.remotes.transport import ConnectionFailed
    said = False

    def told(msg: dict) -> None:
        nonlocal said
        said = True
        progress(msg)
    try:
        return images.pull(ns, ref, progress=told, **kw)
    except ConnectionFailed as e:
        if said or not e.dial:
            raise
        raise ConnectionFailed(f'Get "{e.base}/v2/": {e.dial}', base=e.base, dial=e.dial) from None


async def push(request: web.Request) -> web.StreamResponse:
    s = services(request)
    name = request.match_info["name"]
    t = request.query.get("tag")
    if t:
        name = f"{name}:{t}"
    job = Job(request)
    await job.run(s.images.push, namespace_of(request), name, auth=_auth(request))
    return await job.finish()


async def load(request: web.Request) -> web.StreamResponse:
    s = services(request)
    job = Job(request)
    job.errors_in_stream = True  # as docker's: 200, and the archive's error in the stream
    body = SyncBody(request, job.loop)
    await job.run(s.images.load, namespace_of(request), body, quiet=_bool(request, "quiet"))
    return await job.finish()


async def save(request: web.Request) -> web.StreamResponse:
    s = services(request)
    names = request.query.getall("names", [])
    if "name" in request.match_info:
        names = [request.match_info["name"]]
    if not names:
        raise InvalidArgument("no image names given")
    for n in names:
        refmod.check_any(n)
    ns = namespace_of(request)
    images = await s.run(s.images.prepare_save, ns, names)
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/x-tar"}))
    await resp.prepare(request)

    class Out:
        def write(self, data: bytes) -> int:
            if data:
                asyncio.run_coroutine_threadsafe(resp.write(bytes(data)), loop).result()
            return len(data)

        def flush(self) -> None:
            pass
    try:
        await s.run(s.images.save, ns, images, Out())
    except Exception:
        # the headers are gone: cut the stream (no last chunk) so the client sees a truncated archive
        if request.transport is not None:
            request.transport.close()
        raise
    await resp.write_eof()
    return resp


async def search(request: web.Request) -> web.Response:
    """GET /images/search: the index's results (berth.remotes.search); the limit 25 unless given."""
    s = services(request)
    q = request.query
    limit = int(q["limit"]) if q.get("limit") else 25
    return json_response(await s.run(s.images.search, q.get("term", ""), limit, _filters(request), _auth(request)))


async def distribution(request: web.Request) -> web.Response:
    """GET /distribution/{name}/json: what the registry holds for a reference."""
    s = services(request)
    return json_response(await s.run(s.images.distribution_inspect, request.match_info["name"], _auth(request)))


def routes(r: Router) -> None:
    r.add("GET", "/distribution/{name:.+}/json", distribution)
    r.add("GET", "/images/json", list_)
    r.add("GET", "/images/search", search)
    r.add("POST", "/images/create", create)
    r.add("POST", "/images/load", load)
    r.add("GET", "/images/get", save)
    r.add("POST", "/images/prune", prune)
    r.add("GET", "/images/{name:.+}/json", inspect)
    r.add("GET", "/images/{name:.+}/history", history)
    r.add("GET", "/images/{name:.+}/get", save)
    r.add("POST", "/images/{name:.+}/tag", tag)
    r.add("POST", "/images/{name:.+}/push", push)
    r.add("DELETE", "/images/{name:.+}", remove)

