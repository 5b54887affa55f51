"""System endpoints: /_ping, /version, /info, /auth."""

from __future__ import annotations

import os
import platform

from aiohttp import web

from berth import __version__
from berth.errors import InvalidArgument
from berth.api.app import (
    API_VERSION,
    MIN_API_VERSION,
    Router,
    api_version,
    json_body,
    json_response,
    namespace_of,
    services,
    stream_headers,
)


async def ping(request: web.Request) -> web.Response:
    headers = dict(stream_headers())
    headers.update({"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                    "Builder-Version": "1", "Docker-Experimental": "false", "Ostype": "linux"})
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers, content_type="text/plain")
    return web.Response(text="OK", headers=headers, content_type="text/plain")


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


async def version(request: web.Request) -> web.Response:
    u = os.uname()
    return json_response({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": __version__,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                                    "Arch": _arch(), "KernelVersion": u.release, "Experimental": "false",
                                    "GoVersion": "python" + platform.python_version(), "GitCommit": "",
                                    "BuildTime": ""}}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": _arch(),
        "KernelVersion": u.release, "BuildTime": "",
    })


async def info(request: web.Request) -> web.Response:
    s = services(request)
    return json_response(await s.run(s.system.info, namespace_of(request)))


async def auth(request: web.Request) -> web.Response:
    s = services(request)
    body = await json_body(request)
    await s.run(s.images.login, body.get("serveraddress") or "", body.get("username") or "",
                body.get("password") or "")
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def disk_usage(request: web.Request) -> web.Response:
    """GET /system/df: images, containers, volumes and the build cache."""
    s = services(request)
    v = api_version(request)
    kinds = request.query.getall("type", [])
    if v is not None and v < (1, 42):
        kinds = []  # (its `type` came with 1.42)
    for k in kinds:
        if k not in _DF_KINDS:
            raise InvalidArgument(f"unknown object type: {k}")  # dockerd's words
    du = await s.run(s.system.disk_usage, namespace_of(request))
    if kinds:  # only those asked for, the others null as dockerd leaves them
        for k, fields in _DF_KINDS.items():
            if k not in kinds:
                for f in fields:
                    du[f] = 0 if f == "LayersSize" else None
    if du.get("Images"):
        from berth.api.images import without_virtual_size
        du["Images"] = without_virtual_size(du["Images"], v)
    if v is not None and v < (1, 42) and "BuilderSize" not in du:
        # before API 1.42 the build cache's total is given on its own too (dockerd 20.10's)
        du["BuilderSize"] = sum(int(c.get("Size") or 0) for c in du.get("BuildCache") or [])
    return json_response(du)


_DF_KINDS = {"container": ("Containers",), "image": ("LayersSize", "Images"), "volume": ("Volumes",),
             "build-cache": ("BuildCache",)}


def routes(r: Router) -> None:
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    r.add("POST", "/auth", auth)
    r.add("GET", "/system/df", disk_usage)
