"""System endpoints: /_ping, /version, /info, /auth."""

import os
import platform

from aiohttp import web

from berth import __version__
from berth.api.app import API_VERSION, MIN_API_VERSION, json_response, namespace_of, stream_headers


async def ping(request):
    headers = dict(stream_headers())
    headers.update({"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
                    "Builder-Version": "1", "Docker-Experimental": "false", "Ostype": "linux"})
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers, content_type="text/plain")
    return web.Response(text="OK", headers=headers, content_type="text/plain")


def _arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


async def version(request):
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


async def info(request):
    d = request.app["daemon"]
    ns = namespace_of(request)
    data = await d.run(d.info, ns)
    return json_response(data)


async def auth(request):
    d = request.app["daemon"]
    body = await request.json()
    await d.run(d.images.login, body.get("serveraddress") or "", body.get("username") or "",
                body.get("password") or "")
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def disk_usage(request):
    """GET /system/df: images, containers, volumes (services/export.py) and the build cache."""
    from berth.api.build import build_cache_usage
    from berth.services import export
    d = request.app["daemon"]
    ns = namespace_of(request)

    def collect():
        out = export.disk_usage(d.containers, ns, d.volumes)
        out["BuildCache"] = build_cache_usage(d, ns)
        return out
    return json_response(await d.run(collect))


def routes(r):
    r.add("GET", "/_ping", ping)
    r.add("HEAD", "/_ping", ping)
    r.add("GET", "/version", version)
    r.add("GET", "/info", info)
    r.add("POST", "/auth", auth)
    r.add("GET", "/system/df", disk_usage)
