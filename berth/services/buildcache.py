"""The build cache: one lease per step (``buildcache-<key>``), labelled with the image the step
made; the lease keeps that image's content alive until ``prune``."""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING

from berth.errors import BerthError, NotFound

if TYPE_CHECKING:
    from berth.metadata import MetadataStore
    from berth.services.images import ImageService

CACHE_LEASE_PREFIX = "buildcache-"


class BuildCache:
    def __init__(self, meta: MetadataStore, images: ImageService) -> None:
        self.meta = meta
        self.images = images

    @staticmethod
    def key(parent_id: str | None, step: str) -> str:
        return hashlib.sha256(f"{parent_id or 'scratch'}\n{step}".encode()).hexdigest()

    def load(self, ns: str) -> dict:
        """{lease id: lease} of the namespace's cache entries: one query for a whole build."""
        return {lease.id: lease for lease in self.entries(ns)}

    def get(self, ns: str, key: str, known: dict | None = None) -> tuple[dict, object] | None:
        lid = CACHE_LEASE_PREFIX + key[:32]
        if known is not None:
            lease = known.get(lid)
            if lease is None:
                return None
        else:
            try:
                lease = self.meta.get_lease(ns, lid)
            except NotFound:
                return None
        target = lease.labels.get("target")
        if not target:
            return None
        try:
            desc = json.loads(target)
            r = self.images._resolved([], desc)
        except (BerthError, ValueError):
            return None
        return desc, r

    def put(self, ns: str, key: str, desc: dict, size: int = 0) -> None:
        lid = CACHE_LEASE_PREFIX + key[:32]
        labels = {"target": json.dumps(desc), "size": str(size), "created": str(time.time())}
        try:
            self.meta.create_lease(ns, lid, labels=labels)
        except BerthError:
            try:
                self.meta.update_lease(ns, lid, labels=labels)
            except BerthError:
                return
        self.meta.add_lease_resource(ns, lid, "content", desc["digest"])

    def entries(self, ns: str) -> list:
        out = []
        for lease in self.meta.list_leases(ns):
            if lease.id.startswith(CACHE_LEASE_PREFIX):
                out.append(lease)
        return out

    def prune(self, ns: str, all_: bool = True, filters: dict | None = None) -> dict:
        """POST /build/prune: the entries that match the filters (dockerd's: until/unused-for, a
        duration the entry has not been used for; id, type, description, inuse, shared, private,
        parent; label and label! taken and, as dockerd 20.10's, not applied)."""
        match = prune_filter(filters or {})
        removed = []
        size = 0
        for lease in self.entries(ns):
            if not match(lease):
                continue
            try:
                self.meta.delete_lease(ns, lease.id)
            except NotFound:
                continue
            removed.append(lease.id[len(CACHE_LEASE_PREFIX):])
            size += int(lease.labels.get("size") or 0)
        report = self.images.collect()
        reclaimed = max(size, report.reclaimed_bytes)
        self.images.events.publish(ns, "builder", "prune", "", reclaimed=reclaimed)  # dockerd's, even for none
        return {"CachesDeleted": removed or None, "SpaceReclaimed": reclaimed}

    def usage(self, ns: str) -> list[dict]:
        """Build-cache records as GET /system/df lists them."""
        out = []
        for lease in self.entries(ns):
            created = float(lease.labels.get("created") or lease.created_at)
            out.append({"ID": lease.id[len(CACHE_LEASE_PREFIX):], "Parents": None, "Type": "regular",
                        "Description": "build step", "InUse": False, "Shared": False,
                        "Size": int(lease.labels.get("size") or 0),
                        "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
                        "LastUsedAt": None, "UsageCount": 0})
        return out


# dockerd's /build/prune filters: buildkit's cache fields, then its own
_CACHE_FIELDS = ("id", "parent", "type", "description", "inuse", "shared", "private")
_PRUNE_KEYS = _CACHE_FIELDS + ("unused-for", "until", "label", "label!")


def prune_filter(filters: dict):
    """The predicate on cache entries of /build/prune's filters, with dockerd's errors (400)."""
    import re

    from berth.errors import InvalidArgument
    from berth.gotime import parse_duration

    def fail(msg: str) -> InvalidArgument:
        return InvalidArgument("failed to prune build cache: " + msg)
    f = {k: _values(v) for k, v in filters.items()}
    for k in f:
        if k not in _PRUNE_KEYS:
            raise fail(f"Invalid filter '{k}'")
    if "until" in f and "unused-for" in f:
        raise fail('conflicting filters: "until" and "unused-for"')
    key = "unused-for" if "unused-for" in f else "until"
    keep_for = None
    vals = f.get(key) or []
    if len(vals) > 1:
        raise fail("filters expect only one value")
    if vals:
        try:
            keep_for = parse_duration(vals[0]) / 1e9
        except ValueError as e:
            raise fail(f"\"{key}\" filter expects a duration (e.g., '24h'): {e}") from None
    fields = {}
    for k in _CACHE_FIELDS:
        if k in f:
            if len(f[k]) > 1:
                raise fail("filters expect only one value")
            fields[k] = f[k][0] if f[k] else None
    now = time.time()

    def match(lease) -> bool:
        if keep_for and now - float(lease.labels.get("created") or lease.created_at) < keep_for:
            return False
        rec = {"id": lease.id[len(CACHE_LEASE_PREFIX):], "parent": "", "type": "regular",
               "description": "build step", "inuse": "false", "shared": "false", "private": "true"}
        for k, want in fields.items():
            if want is None:  # the field named without a value: it is set
                if rec[k] in ("", "false"):
                    return False
            elif k == "id":
                try:
                    if not re.search(want, rec["id"]):
                        return False
                except re.error:
                    if want not in rec["id"]:
                        return False
            elif rec[k] != want:
                return False
        return True
    return match


def _values(v) -> list[str]:
    if isinstance(v, dict):
        return [k for k in v]
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v or []]
