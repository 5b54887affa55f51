"""GET /events: what happened to containers and images, replayed since a time and then live."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from berth.api.app import Router, json_line, namespace_of, services, stream_headers
from berth.api.images import _filters
from berth.errors import InvalidArgument
from berth.services.events import matches


def _ts(s: str | None) -> int | None:
    """A since/until as Unix nanoseconds: "seconds[.fraction]" (what docker's CLI sends, its
    fraction read as digits of a second, as dockerd's ParseTimestamps), or RFC 3339."""
    if s in (None, ""):
        return None
    secs, _, frac = s.partition(".")
    if secs.lstrip("-").isdigit() and (frac == "" or frac.isdigit()):
        return int(secs) * 10**9 + (int(frac[:9].ljust(9, "0")) if frac else 0)
    import calendar
    try:
        whole = calendar.timegm(time.strptime(s.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise InvalidArgument(f"invalid time {s!r}: neither a Unix time nor RFC 3339") from None
    frac = s[19:].rstrip("Z")[1:] if s[19:20] == "." else ""
    return whole * 10**9 + (int(frac[:9].ljust(9, "0")) if frac.isdigit() else 0)


async def events(request: web.Request) -> web.StreamResponse:
    bus = services(request).events
    ns = namespace_of(request)
    filters = _filters(request)  # as dockerd's, an unknown one is no error (and matches nothing it names)
    since = _ts(request.query.get("since"))
    until = _ts(request.query.get("until"))
    if until is not None and since is not None and until < since:
        raise InvalidArgument(f"`since` time ({request.query.get('since')}) cannot be after `until` time "
                              f"({request.query.get('until')})")
    if until is not None and since is None:
        since = 0  # as dockerd's: an until alone replays the kept events up to it
    resp = web.StreamResponse(status=200, headers=dict(stream_headers(), **{"Content-Type": "application/json"}))
    await resp.prepare(request)
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(ns_: str, ev: dict) -> None:  # any thread: the bus calls it
        loop.call_soon_threadsafe(queue.put_nowait, (ns_, ev))
    # the kept events from since to until (dockerd compares nanoseconds), then what comes, until
    replayed = bus.subscribe(deliver, ns, since, until, filters)
    try:
        for ev in replayed:
            await resp.write(json_line(ev))
        while True:
            timeout = None if until is None else until / 1e9 - time.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                ns_, ev = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                break
            if ns_ == ns and matches(ev, filters) and (until is None or ev["timeNano"] <= until):
                await resp.write(json_line(ev))
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(deliver)
    try:
        await resp.write_eof()
    except ConnectionError:
        pass
    return resp


def routes(r: Router) -> None:
    r.add("GET", "/events", events)
