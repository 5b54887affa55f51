"""The event bus: services publish what happened (docker's event shape); front ends subscribe.

Any thread may publish; a subscriber is a callable taking (namespace, event) (the API's
/events hands each event to its asyncio queues with call_soon_threadsafe)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable


class EventBus:
    def __init__(self, keep: int = 1000):
        self.log: collections.deque = collections.deque(maxlen=keep)  # (namespace, event)
        self._subscribers: list[Callable[[str, dict], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[str, dict], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)

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
        self.log.append((ns, ev))
        with self._lock:
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
