"""GET /events: what happened to containers and images, replayed since a time and then live."""

import asyncio
import json
import time

from aiohttp import web

from berth.api.app import namespace_of, services, stream_headers
from berth.api.images import _filters


def _ts(s):
    if s in (None, ""):
        return None
    try:
        return float(s)
    except ValueError:
        import calendar
        return calendar.timegm(time.strptime(s.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S"))


def _match(ev, filters):
    for key, values in filters.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        attrs = ev["Actor"]["Attributes"]
        if key == "type" and ev["Type"] not in values:
            return False
        if key == "event" and ev["Action"].split(":")[0] not in values:
            return False
        if key in ("container", "image") and ev["Type"] == key and not any(
                v == ev["Actor"]["ID"] or ev["Actor"]["ID"].startswith(v) or v == attrs.get("name") for v in values):
            return False
        if key in ("container", "image") and ev["Type"] != key:
            return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in attrs or (eq and attrs[k] != val):
                    return False
    return True


async def events(request):
    bus = services(request).events
    ns = namespace_of(request)
    filters = _filters(request)
    since = _ts(request.query.get("since"))
    until = _ts(request.query.get("until"))
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/json"}))
    await resp.prepare(request)
    queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(ns_, ev):  # any thread: the bus calls it
        loop.call_soon_threadsafe(queue.put_nowait, (ns_, ev))
    bus.subscribe(deliver)
    try:
        if since is not None:
            for ns_, ev in list(bus.log):
                if ns_ == ns and ev["time"] >= since and (until is None or ev["time"] <= until) and _match(ev, filters):
                    await resp.write(json.dumps(ev).encode() + b"\n")
        while True:
            timeout = None if until is None else until - time.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                ns_, ev = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                break
            if ns_ == ns and _match(ev, filters):
                await resp.write(json.dumps(ev).encode() + b"\n")
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(deliver)
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def routes(r):
    r.add("GET", "/events", events)
