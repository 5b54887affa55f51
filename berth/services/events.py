"""The event bus: services publish what happened (docker's event shape); front ends subscribe.

Any thread may publish; a subscriber is a callable taking (namespace, event) (the API's
/events hands each event to its asyncio queues with call_soon_threadsafe)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable


class EventBus:
    def __init__(self, keep: int = 1000) -> None:
        self.log: collections.deque = collections.deque(maxlen=keep)  # (namespace, event)
        self._subscribers: list[Callable[[str, dict], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[str, dict], None], ns: str | None = None, since_ns: int | None = None,
                  until_ns: int | None = None, filters: dict | None = None) -> list[dict]:
        """Have fn called with every event from now on. With since_ns: also returns the kept events
        of namespace ns from since_ns to until_ns (Unix nanoseconds, both included) that pass the
        filters, taken in the same step as the subscription (none is both replayed and told)."""
        with self._lock:
            self._subscribers.append(fn)
            kept = list(self.log) if since_ns is not None else []
        return [ev for ns_, ev in kept
                if ns_ == ns and ev["timeNano"] >= since_ns and (until_ns is None or ev["timeNano"] <= until_ns)
                and matches(ev, filters or {})]

    def unsubscribe(self, fn: Callable[[str, dict], None]) -> None:
        with self._lock:
            try:
                self._subscribers.remove(fn)
            except ValueError:
                pass

    def publish(self, ns: str, type_: str, action: str, actor_id: str, **attrs: Any) -> dict:
        now = time.time_ns()
        ev = {"Type": type_, "Action": action,
              "Actor": {"ID": actor_id, "Attributes": {k: str(v) for k, v in attrs.items() if v is not None}},
              "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ == "container":
            ev.update(status=action, id=actor_id, **({"from": attrs["image"]} if attrs.get("image") else {}))
        elif type_ == "image":
            ev.update(status=action, id=actor_id)
        with self._lock:
            self.log.append((ns, ev))
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(ns, ev)
            except Exception:  # noqa: BLE001 - a subscriber never breaks a publisher
                pass
        return ev

    def container(self, ns: str, rec, action: str, **extra: Any) -> None:
        """A container event with docker's attributes (image, name, labels) from its record."""
        attrs: dict[str, Any] = {}
        if rec is not None:
            attrs = {"image": (rec.extensions or {}).get("image_name") or rec.image, "name": rec.name}
            attrs.update(rec.labels or {})
        attrs.update(extra)
        self.publish(ns, "container", action, rec.id if rec is not None else extra.pop("id", ""), **attrs)


def matches(ev: dict, filters: dict) -> bool:
    """Whether an event passes docker events' filters (type, event, container, image, network,
    volume: any of their values; label: all of them)."""
    attrs = ev["Actor"]["Attributes"]
    for key, values in filters.items():
        if isinstance(values, dict):
            values = [k for k, v in values.items() if v]
        elif isinstance(values, str):
            values = [values]
        if key == "type" and ev["Type"] not in values:
            return False
        if key == "event" and ev["Action"].split(":")[0] not in values:
            return False
        if key == "scope" and ev.get("scope", "local") not in values:
            return False
        if key in ("daemon", "node", "plugin", "service", "secret", "config") and ev["Type"] != key:
            return False  # berth has no such objects: none of their events
        if key in ("container", "image", "network", "volume"):
            if ev["Type"] != key or not any(
                    v == ev["Actor"]["ID"] or ev["Actor"]["ID"].startswith(v) or v == attrs.get("name")
                    for v in values):
                return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in attrs or (eq and attrs[k] != val):
                    return False
    return True
